"""Captures to the connections table: packet index, TCP reassembly, the fast lane, tshark."""
