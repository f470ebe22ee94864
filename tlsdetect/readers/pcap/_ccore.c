/*
 * The compiled capture core (issue 19, phase 1): the per-packet work of the pcap reader thread.
 *
 * Why C and not numpy: the numpy record index scans every byte of a 16 MiB window to find the
 * ~20,000 record starts in it, and header decoding costs ~60 gathers over every packet; a loop
 * that follows the length fields touches ~40 bytes per packet instead. Measured on the 1.72 GB
 * benchmark file: record index 2.1 s, decode 0.9 s, flow keys 0.2 s of CPU in numpy.
 *
 * Why plain CPython C-API with the buffer protocol, not Cython or the numpy C-API: Cython is not
 * installed and would be one more build dependency; the numpy headers would tie the build to a
 * numpy version. Here the caller allocates the numpy arrays and hands them in as writable
 * buffers, so the extension needs only Python.h and a C compiler, and any numpy works.
 *
 * The bytes are untrusted: every read is bounds-checked. The walkers never follow a length past
 * the buffer; the decoder reads through clamped indices exactly like numpy's take(mode="clip")
 * in tlsdetect/wire/gather.py, so its output equals the numpy decoder's on every row, valid or
 * not (the tests compare all of them). The GIL is released inside every loop, so the engine
 * thread runs while a window is indexed.
 *
 * Python wrapper and contract: tlsdetect/readers/pcap/ccore.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ------------------------------------------------------------------------------- */

/* A C-contiguous buffer of `itemsize`-byte items; for 8-byte items the format must be an
 * integer one (int64 or uint64), so a float64 array is refused instead of reinterpreted. */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '@' || *f == '=')
        f++;
    int ok = view->itemsize == itemsize;
    if (ok && itemsize == 8)
        ok = (f[0] == 'q' || f[0] == 'Q' || f[0] == 'l' || f[0] == 'L') && f[1] == '\0';
    if (ok && itemsize == 1)
        ok = (f[0] == 'B' || f[0] == 'b' || f[0] == 'c' || f[0] == '?') && f[1] == '\0';
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous buffer of %zd-byte integers", name, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static inline uint32_t rd32(const uint8_t *p, int little)
{
    return little ? ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24)
                  : ((uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24);
}

/* ---- record walkers -------------------------------------------------------------------------- */

/* One step of a walk: the length of the record at `pos` (n - pos bytes left in `b`), or -1 where the
 * walk must stop and leave the record to the exact Python walker. */
typedef int64_t (*walk_step)(const uint8_t *b, int64_t n, int64_t pos, int little, long long max_len);

/* The walkers' shared frame: arguments (buf, out, at, limit, little, max_len), buffers, the loop
 * that writes each record start to `out` while one starts before `limit`, and the (count, next)
 * answer; `step` is the format's own check. */
static PyObject *walk(PyObject *args, walk_step step)
{
    PyObject *buf_o, *out_o;
    long long at, limit, max_len;
    int little;
    if (!PyArg_ParseTuple(args, "OOLLpL", &buf_o, &out_o, &at, &limit, &little, &max_len))
        return NULL;
    Py_buffer buf, out;
    if (get_buffer(buf_o, &buf, 0, 1, "buf") < 0)
        return NULL;
    if (get_buffer(out_o, &out, 1, 8, "out") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const uint8_t *b = (const uint8_t *)buf.buf;
    const int64_t n = (int64_t)buf.len;
    int64_t *o = (int64_t *)out.buf;
    const int64_t cap = (int64_t)(out.len / 8);
    int64_t pos = at < 0 ? 0 : (at > n ? n : at), count = 0;
    Py_BEGIN_ALLOW_THREADS
    while (pos < limit && count < cap) {
        int64_t len = step(b, n, pos, little, max_len);
        if (len < 0)
            break;
        o[count++] = pos;
        pos += len;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    PyBuffer_Release(&out);
    return Py_BuildValue("LL", (long long)count, (long long)pos);
}

/* walk_pcap(buf, out, at, limit, little, max_packet) -> (count, next)
 *
 * Classic pcap records from `at` while a record starts before `limit`: each start goes to `out`
 * (int64). Stops, without judging, at the first record that is not plainly whole and sane (its
 * header or data runs past the buffer, or it claims more than `max_packet` bytes) and returns
 * where: the exact Python walker takes over there and names any damage. */
static int64_t pcap_step(const uint8_t *b, int64_t n, int64_t pos, int little, long long max_packet)
{
    if (n - pos < 16)
        return -1;
    uint32_t incl = rd32(b + pos + 8, little);
    if ((long long)incl > max_packet || (int64_t)incl > n - pos - 16)
        return -1;
    return 16 + (int64_t)incl;
}

static PyObject *walk_pcap(PyObject *self, PyObject *args)
{
    return walk(args, pcap_step);
}

/* pcap_fields(buf, starts, little, nano, caplen, ts_ns)
 *
 * Captured length and nanosecond timestamp of the classic pcap records at `starts` (int64), into
 * the int64 arrays `caplen` and `ts_ns`: one pass while the headers are still near in memory,
 * instead of three numpy gathers. A start whose 16-byte header is not in the buffer is refused. */
static PyObject *pcap_fields(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *starts_o, *cap_o, *ts_o;
    int little, nano;
    if (!PyArg_ParseTuple(args, "OOppOO", &buf_o, &starts_o, &little, &nano, &cap_o, &ts_o))
        return NULL;
    Py_buffer buf, starts, cap, ts;
    if (get_buffer(buf_o, &buf, 0, 1, "buf") < 0)
        return NULL;
    if (get_buffer(starts_o, &starts, 0, 8, "starts") < 0)
        goto fail_buf;
    if (get_buffer(cap_o, &cap, 1, 8, "caplen") < 0)
        goto fail_starts;
    if (get_buffer(ts_o, &ts, 1, 8, "ts_ns") < 0)
        goto fail_cap;
    const uint8_t *b = (const uint8_t *)buf.buf;
    const int64_t n = (int64_t)buf.len, m = (int64_t)(starts.len / 8);
    const int64_t *sp = (const int64_t *)starts.buf;
    int64_t *cp = (int64_t *)cap.buf, *tp = (int64_t *)ts.buf;
    if (cap.len != starts.len || ts.len != starts.len) {
        PyErr_SetString(PyExc_ValueError, "pcap_fields: starts, caplen and ts_ns must match in length");
        goto fail_all;
    }
    for (int64_t i = 0; i < m; i++) {
        if (sp[i] < 0 || sp[i] > n - 16) {
            PyErr_Format(PyExc_ValueError, "pcap_fields: record %lld lies outside the buffer", (long long)i);
            goto fail_all;
        }
    }
    const int64_t unit = nano ? 1 : 1000;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < m; i++) {
        const uint8_t *r = b + sp[i];
        tp[i] = (int64_t)rd32(r, little) * 1000000000 + (int64_t)rd32(r + 4, little) * unit;
        cp[i] = (int64_t)rd32(r + 8, little);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ts);
    PyBuffer_Release(&cap);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
fail_all:
    PyBuffer_Release(&ts);
fail_cap:
    PyBuffer_Release(&cap);
fail_starts:
    PyBuffer_Release(&starts);
fail_buf:
    PyBuffer_Release(&buf);
    return NULL;
}

/* walk_pcapng(buf, out, at, limit, little, max_block) -> (count, next)
 *
 * pcapng packet blocks (EPB, SPB, obsolete PB) from `at`, with the same checks as the Python
 * walker: block length at least the type's minimum, a multiple of 4, at most `max_block`, whole
 * in the buffer, and equal to the trailing length. Any other block (a section or interface
 * header, statistics, damage) stops the walk; the Python walker takes it. */
static int64_t pcapng_step(const uint8_t *b, int64_t n, int64_t pos, int little, long long max_block)
{
    if (n - pos < 12)
        return -1;
    uint32_t btype = rd32(b + pos, little);
    if (btype != 6 && btype != 3 && btype != 2)
        return -1;
    uint32_t blen = rd32(b + pos + 4, little);
    uint32_t min_len = btype == 3 ? 16 : 32;
    if (blen < min_len || blen % 4 || (long long)blen > max_block || (int64_t)blen > n - pos)
        return -1;
    if (rd32(b + pos + blen - 4, little) != blen)
        return -1;
    return (int64_t)blen;
}

static PyObject *walk_pcapng(PyObject *self, PyObject *args)
{
    return walk(args, pcapng_step);
}

/* ---- header decoding ------------------------------------------------------------------------- */

/* One byte at `i`, the index clamped to the buffer: numpy's take(mode="clip"). n > 0. */
#define U8(i) ((int64_t)b[(i) < 0 ? 0 : ((i) >= n ? n - 1 : (i))])
#define BE16(i) ((U8(i) << 8) | U8((i) + 1))
#define BE32(i) ((BE16(i) << 16) | BE16((i) + 2))
#define BE64(i) (((uint64_t)BE32(i) << 32) | (uint64_t)BE32((i) + 4))

enum {
    ETH_IPV4 = 0x0800, ETH_IPV6 = 0x86DD, ETH_PPPOE = 0x8864, PPP_IPV4 = 0x21, PPP_IPV6 = 0x57,
};

/* The network header after a PPP protocol field at `at` (one byte when odd, else two). */
static inline void ppp(const uint8_t *b, int64_t n, int64_t at, int64_t *l3, int64_t *et)
{
    int one = (U8(at) & 1) == 1;
    int64_t proto = one ? U8(at) : BE16(at);
    *et = proto == PPP_IPV4 ? ETH_IPV4 : (proto == PPP_IPV6 ? ETH_IPV6 : 0);
    *l3 = at + (one ? 1 : 2);
}

/* Rows of the (13, n) int64 output of decode, in this order (see ccore.py). */
enum { R_VERSION, R_PROTO, R_SPORT, R_DPORT, R_SEQ, R_FLAGS, R_PAYLOAD, R_PLEN,
       R_SRC_HI, R_SRC_LO, R_DST_HI, R_DST_LO, R_VALID, N_ROWS };

/* decode(buf, data, caplen, linktype, out) -> fragments
 *
 * The C twin of tlsdetect.readers.pcap.packets.decode, field for field (same link types, same
 * rules, same values on invalid rows). `out` is a C-contiguous int64 array of shape (13, n).
 * Packets must lie in the buffer (0 <= data, 0 <= caplen, data + caplen <= len(buf)), as every
 * batch of the capture reader does; anything else is refused with ValueError. */
static PyObject *decode(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *data_o, *cap_o, *lt_o, *out_o;
    if (!PyArg_ParseTuple(args, "OOOOO", &buf_o, &data_o, &cap_o, &lt_o, &out_o))
        return NULL;
    Py_buffer buf, data, cap, lt, out;
    if (get_buffer(buf_o, &buf, 0, 1, "buf") < 0)
        return NULL;
    if (get_buffer(data_o, &data, 0, 8, "data") < 0)
        goto fail_buf;
    if (get_buffer(cap_o, &cap, 0, 8, "caplen") < 0)
        goto fail_data;
    if (get_buffer(lt_o, &lt, 0, 8, "linktype") < 0)
        goto fail_cap;
    if (get_buffer(out_o, &out, 1, 8, "out") < 0)
        goto fail_lt;

    const uint8_t *b = (const uint8_t *)buf.buf;
    const int64_t n = (int64_t)buf.len;
    const int64_t m = (int64_t)(data.len / 8);
    const int64_t *dp = (const int64_t *)data.buf, *cp = (const int64_t *)cap.buf, *lp = (const int64_t *)lt.buf;
    int64_t *o = (int64_t *)out.buf;
    if (cap.len != data.len || lt.len != data.len || out.len != data.len * N_ROWS) {
        PyErr_SetString(PyExc_ValueError, "decode: data, caplen, linktype and out (13 rows) must match in length");
        goto fail_all;
    }
    for (int64_t i = 0; i < m; i++) {
        if (dp[i] < 0 || cp[i] < 0 || dp[i] > n || cp[i] > n - dp[i]) {
            PyErr_Format(PyExc_ValueError, "decode: packet %lld lies outside the buffer", (long long)i);
            goto fail_all;
        }
    }
    if (m > 0 && n == 0) {
        PyErr_SetString(PyExc_ValueError, "decode: packets in an empty buffer");
        goto fail_all;
    }
    long long fragments = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < m; i++) {
        const int64_t off = dp[i], end = dp[i] + cp[i], linktype = lp[i];
        int64_t l3 = -1, et = 0;
        switch (linktype) {
        case 1: { /* Ethernet, 802.1Q/802.1ad/QinQ tags, PPPoE session */
            int64_t hdr = 14;
            et = BE16(off + 12);
            for (int k = 0; k < 3; k++) {
                if (et != 0x8100 && et != 0x88A8 && et != 0x9100)
                    break;
                et = BE16(off + hdr + 2);
                hdr += 4;
            }
            if (et == ETH_PPPOE) {
                int64_t at;
                ppp(b, n, off + hdr + 6, &at, &et);
                hdr = at - off;
            }
            l3 = off + hdr;
            break;
        }
        case 9: case 50: case 51: { /* PPP, PPP in HDLC-like framing, PPPoE */
            int framed = U8(off) == 0xFF && U8(off + 1) == 0x03;
            int64_t skip = linktype == 51 ? 6 : (framed ? 2 : 0);
            ppp(b, n, off + skip, &l3, &et);
            break;
        }
        case 104: /* Cisco HDLC */
            l3 = off + 4;
            et = BE16(off + 2);
            break;
        case 113: /* Linux SLL */
            l3 = off + 16;
            et = BE16(off + 14);
            break;
        case 276: /* Linux SLL2 */
            l3 = off + 20;
            et = BE16(off);
            break;
        case 101: case 12: case 14: case 228: case 229: /* raw IP */
        case 0: case 108: { /* BSD NULL, OpenBSD LOOP: 4 bytes of family */
            l3 = off + ((linktype == 0 || linktype == 108) ? 4 : 0);
            int64_t version = U8(l3) >> 4;
            et = version == 4 ? ETH_IPV4 : (version == 6 ? ETH_IPV6 : 0);
            break;
        }
        default:
            break;
        }

        int is4 = et == ETH_IPV4 && l3 >= 0 && l3 + 20 <= end && (U8(l3) >> 4) == 4;
        int is6 = et == ETH_IPV6 && l3 >= 0 && l3 + 40 <= end && (U8(l3) >> 4) == 6;
        int64_t proto = -1, l4 = -1, ip_end = end;
        uint64_t src_hi = 0, src_lo = 0, dst_hi = 0, dst_lo = 0;
        if (is4) {
            int64_t ihl = (U8(l3) & 0x0F) * 4, total = BE16(l3 + 2), frag = BE16(l3 + 6);
            int is_frag = (frag & 0x1FFF) != 0 || (frag & 0x2000) != 0;
            fragments += is_frag;
            proto = (is_frag || ihl < 20) ? -1 : U8(l3 + 9);
            l4 = l3 + ihl;
            if (total >= ihl || total == 0) {
                int64_t stop = l3 + (total == 0 ? ((int64_t)1 << 30) : total);
                ip_end = stop < end ? stop : end;
            } else {
                ip_end = -1;
            }
            src_lo = (uint64_t)BE32(l3 + 12) | 0xFFFF00000000ULL;
            dst_lo = (uint64_t)BE32(l3 + 16) | 0xFFFF00000000ULL;
        } else if (is6) {
            int64_t nh = U8(l3 + 6), plen = BE16(l3 + 4), at = l3 + 40;
            for (int k = 0; k < 4; k++) {
                if (nh != 0 && nh != 43 && nh != 60)
                    break;
                int64_t next = U8(at);
                at += (U8(at + 1) + 1) * 8;
                nh = next;
            }
            int frag6 = nh == 44;
            fragments += frag6;
            proto = frag6 ? -1 : nh;
            l4 = at;
            int64_t stop = l3 + 40 + (plen == 0 ? ((int64_t)1 << 30) : plen);
            ip_end = stop < end ? stop : end;
            src_hi = BE64(l3 + 8);
            src_lo = BE64(l3 + 16);
            dst_hi = BE64(l3 + 24);
            dst_lo = BE64(l3 + 32);
        }

        int tcp = proto == 6 && l4 + 20 <= ip_end;
        int udp = proto == 17 && l4 + 8 <= ip_end;
        int64_t doff = (U8(l4 + 12) >> 4) * 4;
        int64_t seq = tcp ? BE32(l4 + 4) : 0, flags = tcp ? U8(l4 + 13) : 0;
        tcp = tcp && doff >= 20 && l4 + doff <= ip_end;
        int64_t payload = tcp ? l4 + doff : (udp ? l4 + 8 : -1);
        int64_t plen = (tcp || udp) ? ip_end - payload : 0;
        int valid = (tcp || udp) && plen >= 0;

        o[R_VERSION * m + i] = is4 ? 4 : (is6 ? 6 : 0);
        o[R_PROTO * m + i] = tcp ? 6 : (udp ? 17 : -1);
        o[R_SPORT * m + i] = BE16(l4);
        o[R_DPORT * m + i] = BE16(l4 + 2);
        o[R_SEQ * m + i] = seq;
        o[R_FLAGS * m + i] = flags;
        o[R_PAYLOAD * m + i] = payload;
        o[R_PLEN * m + i] = plen > 0 ? plen : 0;
        uint64_t *u = (uint64_t *)o; /* the address rows are uint64 (signed and unsigned may alias) */
        u[R_SRC_HI * m + i] = src_hi;
        u[R_SRC_LO * m + i] = src_lo;
        u[R_DST_HI * m + i] = dst_hi;
        u[R_DST_LO * m + i] = dst_lo;
        o[R_VALID * m + i] = valid;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&lt);
    PyBuffer_Release(&cap);
    PyBuffer_Release(&data);
    PyBuffer_Release(&buf);
    return PyLong_FromLongLong(fragments);

fail_all:
    PyBuffer_Release(&out);
fail_lt:
    PyBuffer_Release(&lt);
fail_cap:
    PyBuffer_Release(&cap);
fail_data:
    PyBuffer_Release(&data);
fail_buf:
    PyBuffer_Release(&buf);
    return NULL;
}

#undef U8
#undef BE16
#undef BE32
#undef BE64

/* ---- flow keys --------------------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t h, uint64_t part)
{
    h ^= part;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return h;
}

/* flow_hash(src_hi, src_lo, dst_hi, dst_lo, sport, dport, out): packets.flow_hash's splitmix64
 * finaliser over the fields, into the uint64 array `out`. */
static PyObject *flow_hash(PyObject *self, PyObject *args)
{
    PyObject *in_o[6], *out_o;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &in_o[0], &in_o[1], &in_o[2], &in_o[3], &in_o[4], &in_o[5], &out_o))
        return NULL;
    Py_buffer in[6], out;
    int got = 0;
    for (; got < 6; got++) {
        if (get_buffer(in_o[got], &in[got], 0, 8, "flow_hash input") < 0)
            goto fail;
    }
    if (get_buffer(out_o, &out, 1, 8, "out") < 0)
        goto fail;
    for (int k = 0; k < 6; k++) {
        if (in[k].len != out.len) {
            PyErr_SetString(PyExc_ValueError, "flow_hash: inputs and out must match in length");
            PyBuffer_Release(&out);
            goto fail;
        }
    }
    const uint64_t *sh = in[0].buf, *sl = in[1].buf, *dh = in[2].buf, *dl = in[3].buf;
    const uint64_t *sp = in[4].buf, *dpt = in[5].buf;
    uint64_t *o = out.buf;
    const Py_ssize_t m = out.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {
        uint64_t h = 0x9E3779B97F4A7C15ULL;
        h = mix(h, sh[i]);
        h = mix(h, sl[i]);
        h = mix(h, dh[i]);
        h = mix(h, dl[i]);
        o[i] = mix(h, (sp[i] << 16) | dpt[i]);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    for (int k = 0; k < 6; k++)
        PyBuffer_Release(&in[k]);
    Py_RETURN_NONE;
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&in[k]);
    return NULL;
}

/* ---- fast-lane flights (tlsdetect/readers/pcap/flight.py) ----------------------------------------- */

/* gather_slices(buf, lo, hi, out): the bytes buf[lo[i]:hi[i]] of every i, one after another, into the
 * uint8 array `out` (exactly their total size). Replaces a Python slice and bytes.join per segment
 * when a flight's or a hello's segments are stitched. Every range must lie in the buffer, and out
 * must be exactly the sum of the ranges; anything else is refused before a byte is copied. */
static PyObject *gather_slices(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *lo_o, *hi_o, *out_o;
    if (!PyArg_ParseTuple(args, "OOOO", &buf_o, &lo_o, &hi_o, &out_o))
        return NULL;
    Py_buffer buf, lo, hi, out;
    if (get_buffer(buf_o, &buf, 0, 1, "buf") < 0)
        return NULL;
    if (get_buffer(lo_o, &lo, 0, 8, "lo") < 0)
        goto fail_buf;
    if (get_buffer(hi_o, &hi, 0, 8, "hi") < 0)
        goto fail_lo;
    if (get_buffer(out_o, &out, 1, 1, "out") < 0)
        goto fail_hi;
    const uint8_t *b = (const uint8_t *)buf.buf;
    const int64_t n = (int64_t)buf.len, m = (int64_t)(lo.len / 8);
    const int64_t *l = (const int64_t *)lo.buf, *h = (const int64_t *)hi.buf;
    uint8_t *o = (uint8_t *)out.buf;
    if (hi.len != lo.len) {
        PyErr_SetString(PyExc_ValueError, "gather_slices: lo and hi must match in length");
        goto fail_all;
    }
    int64_t total = 0;
    for (int64_t i = 0; i < m; i++) {
        if (l[i] < 0 || l[i] > h[i] || h[i] > n) {
            PyErr_Format(PyExc_ValueError, "gather_slices: range %lld lies outside the buffer", (long long)i);
            goto fail_all;
        }
        total += h[i] - l[i]; /* each term <= n, m terms: no overflow for any real buffer */
    }
    if (total != (int64_t)out.len) {
        PyErr_SetString(PyExc_ValueError, "gather_slices: out must hold exactly the ranges' bytes");
        goto fail_all;
    }
    Py_BEGIN_ALLOW_THREADS
    int64_t at = 0;
    for (int64_t i = 0; i < m; i++) {
        memcpy(o + at, b + l[i], (size_t)(h[i] - l[i]));
        at += h[i] - l[i];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&lo);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
fail_all:
    PyBuffer_Release(&out);
fail_hi:
    PyBuffer_Release(&hi);
fail_lo:
    PyBuffer_Release(&lo);
fail_buf:
    PyBuffer_Release(&buf);
    return NULL;
}

/* A byte of `d` (n bytes) at a clamped index, as numpy's take(mode="clip") reads it (Gather.u8). */
static inline int64_t clip8(const uint8_t *d, int64_t n, int64_t i)
{
    return d[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

#define FLIGHT_MAX_MESSAGES 16
#define TLS_MAX_RECORD_LENGTH (16384 + 2048)

/* flight_walk(data, start, length, settled, cert_start, cert_len, ran_out, cert_request, msg_owner,
 *             msg_size) -> messages
 *
 * flight.py's _walk for every owner i of the assembled flights data[start[i]:start[i]+length[i]]:
 * records and handshake messages, at most 16 message positions, stopping where the numpy walk stops
 * (a record that is not handshake, a message spanning records, ServerHelloDone, ChangeCipherSpec).
 * Per owner: settled, cert_start/cert_len (-1/0 without a Certificate), ran_out, cert_request (uint8
 * or bool arrays of n; int64 for the two cert fields); every walked message's owner and size (with its
 * 4-byte header) into msg_owner/msg_size (int64, room for 16 per owner), grouped by owner in stream
 * order; returns how many. Reads go through clip8 like the numpy Gather, so they stay in `data`
 * whatever the bytes say; each flight must lie in `data` (refused otherwise). */
static PyObject *flight_walk(PyObject *self, PyObject *args)
{
    PyObject *o[10];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9]))
        return NULL;
    static const Py_ssize_t size[10] = {1, 8, 8, 1, 8, 8, 1, 1, 8, 8};
    static const char *name[10] = {"data", "start", "length", "settled", "cert_start", "cert_len", "ran_out",
                                   "cert_request", "msg_owner", "msg_size"};
    Py_buffer v[10];
    int got = 0;
    for (; got < 10; got++) {
        if (get_buffer(o[got], &v[got], got >= 3, size[got], name[got]) < 0)
            goto fail;
    }
    const uint8_t *d = (const uint8_t *)v[0].buf;
    const int64_t n = (int64_t)v[0].len, m = (int64_t)(v[1].len / 8);
    const int64_t *st = v[1].buf, *ln = v[2].buf;
    uint8_t *settled = v[3].buf, *ran_out = v[6].buf, *cert_request = v[7].buf;
    int64_t *cert_start = v[4].buf, *cert_len = v[5].buf, *msg_owner = v[8].buf, *msg_size = v[9].buf;
    if (v[2].len != v[1].len || v[3].len != m || v[4].len != m * 8 || v[5].len != m * 8 || v[6].len != m ||
        v[7].len != m || v[8].len != v[9].len || v[8].len < m * 8 * FLIGHT_MAX_MESSAGES) {
        PyErr_SetString(PyExc_ValueError, "flight_walk: output arrays do not match the flights");
        goto fail;
    }
    for (int64_t i = 0; i < m; i++) {
        if (st[i] < 0 || ln[i] < 0 || st[i] > n || ln[i] > n - st[i]) {
            PyErr_Format(PyExc_ValueError, "flight_walk: flight %lld lies outside the data", (long long)i);
            goto fail;
        }
    }
    int64_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < m; i++) {
        int64_t p = st[i], end = st[i] + ln[i], rec_end = st[i];
        int s = 0, ro = 0, cr = 0;
        int64_t cs = -1, cl = 0;
        for (int step = 0; ln[i] > 0 && step < FLIGHT_MAX_MESSAGES; step++) {
            int stop = 0;
            if (p == rec_end) { /* a new record: handshake continues the walk, ChangeCipherSpec ends it */
                int64_t ctype = clip8(d, n, p), rlen = clip8(d, n, p + 3) << 8 | clip8(d, n, p + 4);
                int header_ok = p + 5 <= end && clip8(d, n, p + 1) == 3 && clip8(d, n, p + 2) <= 4 &&
                                rlen <= TLS_MAX_RECORD_LENGTH;
                if (header_ok && ctype == 20)
                    s = 1;
                stop = !(header_ok && ctype == 22 && p + 5 + rlen <= end);
                if (p + 5 > end || (ctype == 22 && p + 5 + rlen > end))
                    ro = 1;
                if (!stop) {
                    rec_end = p + 5 + rlen;
                    p += 5;
                }
            }
            if (stop)
                break;
            int64_t mtype = clip8(d, n, p);
            int64_t mlen = clip8(d, n, p + 1) << 16 | clip8(d, n, p + 2) << 8 | clip8(d, n, p + 3);
            if (p + 4 + mlen > rec_end) /* a message spanning records: the slow lane's */
                break;
            msg_owner[count] = i;
            msg_size[count++] = mlen + 4;
            if (mtype == 11 && cs < 0) {
                cs = p + 4;
                cl = mlen;
            }
            if (mtype == 13)
                cr = 1;
            p += 4 + mlen;
            if (mtype == 14) {
                s = 1;
                break;
            }
        }
        settled[i] = (uint8_t)s;
        ran_out[i] = (uint8_t)ro;
        cert_request[i] = (uint8_t)cr;
        cert_start[i] = cs;
        cert_len[i] = cl;
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 10; k++)
        PyBuffer_Release(&v[k]);
    return PyLong_FromLongLong((long long)count);
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&v[k]);
    return NULL;
}

/* ---- hellos in bulk (tlsdetect/wire/hello_batch.py) ---------------------------------------------- */

#define HELLO_MAX_EXTENSIONS 1024

static const uint8_t HRR_RANDOM[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

static inline int64_t clip16(const uint8_t *d, int64_t n, int64_t i)
{
    return clip8(d, n, i) << 8 | clip8(d, n, i + 1);
}

/* A growing byte buffer for one hello's key. */
typedef struct {
    uint8_t *b;
    size_t len, cap;
} keybuf;

/* Append one self-delimiting range (salt, 2-byte length, bytes), clamped to the buffer as
 * hello_batch._byte_keys clamps it. Returns -1 when memory runs out. */
static int key_range(keybuf *k, const uint8_t *d, int64_t n, int salt, int64_t start, int64_t length)
{
    start = start < 0 ? 0 : (start > n ? n : start);
    int64_t room = n - start < 0xFFFF ? n - start : 0xFFFF;
    length = length < 0 ? 0 : (length > room ? room : length);
    if (k->len + 3 + (size_t)length > k->cap) {
        size_t cap = (k->cap + 3 + (size_t)length) * 2;
        uint8_t *b = realloc(k->b, cap);
        if (!b)
            return -1;
        k->b = b;
        k->cap = cap;
    }
    k->b[k->len] = (uint8_t)salt;
    k->b[k->len + 1] = (uint8_t)(length >> 8);
    k->b[k->len + 2] = (uint8_t)(length & 0xFF);
    if (length)
        memcpy(k->b + k->len + 3, d + start, (size_t)length);
    k->len += 3 + (size_t)length;
    return 0;
}

static int content_ext(int server, int64_t t)
{
    if (server)
        return t == 0x0010 || t == 0x002B;
    return t == 0x000A || t == 0x000B || t == 0x000D || t == 0x0010 || t == 0x002B;
}

/* hello_walk(buf, body, end, server, valid, sni_start, sni_len, hrr, tls13) -> [key, ...]
 *
 * hello_batch.client_hello_batch (server false) or server_hello_batch (server true) for the hello
 * bodies buf[body[i]:end[i]]: per hello the `valid` walk (uint8/bool), the first host_name's start
 * and length (client; -1/0 otherwise), the HelloRetryRequest and TLS 1.3 flags (server; 0 for a
 * client), and the exact fingerprint-input key as bytes: the same bytes, range by range, as
 * _hash_key/_byte_keys build with numpy. Every read is clamped like Gather (take mode="clip"), so
 * lying lengths give a wrong key for an invalid hello, never a read outside `buf`. */
static PyObject *hello_walk(PyObject *self, PyObject *args)
{
    PyObject *o[9];
    int server;
    if (!PyArg_ParseTuple(args, "OOOpOOOOO", &o[0], &o[1], &o[2], &server, &o[3], &o[4], &o[5], &o[6], &o[7]))
        return NULL;
    static const Py_ssize_t size[8] = {1, 8, 8, 1, 8, 8, 1, 1};
    static const char *name[8] = {"buf", "body", "end", "valid", "sni_start", "sni_len", "hrr", "tls13"};
    Py_buffer v[8];
    int got = 0;
    PyObject *keys = NULL;
    keybuf k = {NULL, 0, 0};
    int64_t *ext = NULL;
    for (; got < 8; got++) {
        if (get_buffer(o[got], &v[got], got >= 3, size[got], name[got]) < 0)
            goto done;
    }
    const uint8_t *d = (const uint8_t *)v[0].buf;
    const int64_t n = (int64_t)v[0].len, m = (int64_t)(v[1].len / 8);
    const int64_t *body = v[1].buf, *endp = v[2].buf;
    uint8_t *valid = v[3].buf, *hrr = v[6].buf, *tls13 = v[7].buf;
    int64_t *sni_start = v[4].buf, *sni_len = v[5].buf;
    if (v[2].len != v[1].len || v[3].len != m || v[4].len != m * 8 || v[5].len != m * 8 || v[6].len != m ||
        v[7].len != m) {
        PyErr_SetString(PyExc_ValueError, "hello_walk: arrays do not match the hellos");
        goto done;
    }
    if (m && n == 0) {
        PyErr_SetString(PyExc_ValueError, "hello_walk: hellos in an empty buffer");
        goto done;
    }
    for (int64_t i = 0; i < m; i++) { /* offsets far outside keep every sum below int64 overflow */
        if (body[i] < -(1LL << 40) || body[i] > (1LL << 40) || endp[i] < -(1LL << 40) || endp[i] > (1LL << 40)) {
            PyErr_Format(PyExc_ValueError, "hello_walk: hello %lld lies far outside the buffer", (long long)i);
            goto done;
        }
    }
    ext = malloc(sizeof(int64_t) * 3 * HELLO_MAX_EXTENSIONS);
    keys = PyList_New(m);
    if (!ext || !keys) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t i = 0; i < m; i++) {
        const int64_t b0 = body[i], end = endp[i];
        int64_t sid_len, fixed0_at, fixed1_at, fixed1_len, ext_at;
        int ok, v13 = 0, sv13 = 0;
        k.len = 0;
        if (!server) {
            sid_len = clip8(d, n, b0 + 34);
            int64_t cs_at = b0 + 35 + sid_len, cs_len = clip16(d, n, cs_at);
            int64_t comp_at = cs_at + 2 + cs_len, comp_len = clip8(d, n, comp_at);
            ext_at = comp_at + 1 + comp_len;
            ok = sid_len <= 32 && cs_len % 2 == 0 && ext_at <= end && b0 + 35 <= end;
            fixed0_at = b0;
            fixed1_at = cs_at + 2;
            int64_t left = end - cs_at - 2;
            fixed1_len = ok ? (cs_len < (left > 0 ? left : 0) ? cs_len : (left > 0 ? left : 0)) : 0;
            hrr[i] = 0;
        } else {
            int64_t version = clip16(d, n, b0);
            int draft = (version >> 8) == 0x7F;
            sid_len = draft ? 0 : clip8(d, n, b0 + 34);
            int64_t cipher_at = draft ? b0 + 34 : b0 + 35 + sid_len;
            ext_at = draft ? cipher_at + 2 : cipher_at + 3;
            ok = sid_len <= 32 && ext_at <= end && b0 + 38 <= end && !draft;
            fixed0_at = b0;
            fixed1_at = cipher_at;
            fixed1_len = 2;
            int same = 1;
            for (int j = 0; j < 32; j++)
                same &= clip8(d, n, b0 + 2 + j) == HRR_RANDOM[j];
            hrr[i] = (uint8_t)same;
            v13 = version == 0x0304;
        }
        /* the extension list, in wire order */
        int64_t count = 0;
        if (ok && ext_at + 2 <= end) {
            int64_t ext_len = clip16(d, n, ext_at);
            int64_t ext_end = ext_at + 2 + ext_len < end ? ext_at + 2 + ext_len : end;
            int64_t p = ext_at + 2;
            while (p + 4 <= ext_end && count < HELLO_MAX_EXTENSIONS) {
                int64_t t = clip16(d, n, p), ln = clip16(d, n, p + 2);
                int fits = p + 4 + ln <= ext_end;
                ext[3 * count] = t;
                ext[3 * count + 1] = p + 4;
                ext[3 * count + 2] = fits ? ln : -1;
                count++;
                p += 4 + ln;
                if (!fits)
                    break;
            }
        }
        int fail = key_range(&k, d, n, 0, fixed0_at, 2) | key_range(&k, d, n, 1, fixed1_at, fixed1_len);
        for (int64_t e = 0; e < count; e++)
            fail |= key_range(&k, d, n, ext[3 * e + 2] < 0 ? 51 : 50, ext[3 * e + 1] - 4, 2);
        for (int64_t e = 0; e < count; e++) {
            if (ext[3 * e + 2] >= 0 && content_ext(server, ext[3 * e]))
                fail |= key_range(&k, d, n, 60, ext[3 * e + 1], ext[3 * e + 2]);
        }
        if (fail) {
            PyErr_NoMemory();
            goto done;
        }
        PyObject *key = PyBytes_FromStringAndSize((const char *)k.b, (Py_ssize_t)k.len);
        if (!key)
            goto done;
        PyList_SET_ITEM(keys, i, key);
        sni_start[i] = -1;
        sni_len[i] = 0;
        int odd = 0, snis = 0;
        for (int64_t e = 0; e < count; e++) {
            if (server) { /* supported_versions: the last one in the list says */
                if (ext[3 * e] == 0x002B && ext[3 * e + 2] == 2)
                    sv13 = clip16(d, n, ext[3 * e + 1]) == 0x0304;
                continue;
            }
            if (ext[3 * e] != 0 || snis++)
                continue;
            int64_t at = ext[3 * e + 1], ln = ext[3 * e + 2];
            int64_t list_len = clip16(d, n, at), name_type = clip8(d, n, at + 2), name_len = clip16(d, n, at + 3);
            int good = ln >= 5 && list_len + 2 <= ln && name_type == 0 && name_len + 3 <= list_len;
            sni_start[i] = good ? at + 5 : -1;
            sni_len[i] = good ? name_len : 0;
            odd = !good && ln >= 0 && !(ln == 0 || list_len == 0);
        }
        tls13[i] = (uint8_t)(v13 || sv13);
        valid[i] = (uint8_t)(ok && !odd && snis <= 1);
    }
done:
    free(ext);
    free(k.b);
    for (int j = 0; j < got; j++)
        PyBuffer_Release(&v[j]);
    if (PyErr_Occurred()) {
        Py_XDECREF(keys);
        return NULL;
    }
    return keys;
}

/* ---- TLS 1.3 flight record walks (window_flights.py's tls13_window_flights) ------------------------ */

#define WALK_MAX_RECORDS 24 /* records.MAX_RECORDS: steps per direction (a sentinel may follow) */
#define WALK_SLOTS (WALK_MAX_RECORDS + 1)
#define KIND_NEXT (-1)
#define KIND_QUIET (-2)
#define KIND_UNKNOWN (-3)
#define WALK_NEVER INT64_MAX

/* One direction of one owner: its contiguous chain of segments (rel, seg, len: pieces lo..hi) and
 * where its walk is. */
typedef struct {
    const int64_t *rel, *seg, *len;
    int64_t lo, hi, end, beyond, pos;
    int broken, limited, active, step, cut;
} hwalk;

typedef struct {
    const uint8_t *buf;
    const int64_t *payload;
    int64_t base, record_max;
} hsrc;

/* records.HeaderWalk._piece: the last piece of the owner starting at or before x (else its first). */
static inline int64_t piece_of(const hwalk *w, int64_t x)
{
    int64_t a = w->lo, b = w->hi; /* the answer is in [lo, hi) */
    while (b - a > 1) {
        int64_t mid = a + (b - a) / 2;
        if (w->rel[mid] <= x)
            a = mid;
        else
            b = mid;
    }
    return a;
}

static inline int64_t chain_byte(const hsrc *s, const hwalk *w, int64_t x)
{
    int64_t j = piece_of(w, x);
    return s->buf[s->payload[w->seg[j]] + x - w->rel[j]];
}

/* records.HeaderWalk.step for one owner: one record (or the sentinel that ends its walk) into
 * kind/length/when; returns 0 when the walk is not active. */
static int hwalk_step(const hsrc *s, hwalk *w, int64_t *kind, int64_t *length, int64_t *when)
{
    if (!w->active)
        return 0;
    int64_t p = w->pos, end = w->end;
    int whole = p + 5 <= end;
    int64_t at = piece_of(w, p < (end > 1 ? end - 1 : 0) ? p : (end > 1 ? end - 1 : 0));
    int64_t t = s->base + w->seg[at];
    int last = !whole || w->step == WALK_MAX_RECORDS;
    int64_t k = p < end ? KIND_NEXT : (p == end && !w->broken ? KIND_QUIET : KIND_UNKNOWN);
    int64_t len = 0;
    if (whole) {
        int64_t ctype = chain_byte(s, w, p), b1 = chain_byte(s, w, p + 1), b2 = chain_byte(s, w, p + 2);
        len = chain_byte(s, w, p + 3) << 8 | chain_byte(s, w, p + 4);
        int sane = ctype >= 20 && ctype <= 24 && b1 == 3 && b2 <= 4 && len <= s->record_max;
        int take = !last;
        k = take ? (sane ? ctype : KIND_UNKNOWN) : KIND_NEXT;
        if (take && sane)
            w->pos = p + 5 + len;
        last |= !sane;
    }
    *kind = k;
    *length = k >= 0 ? len : 0;
    *when = k >= 0 ? t : (p == end ? w->beyond : t);
    if (last) { /* records.ran_out */
        int cut = p > end || (p < end && p + 5 > end) || (p == end && w->broken);
        w->cut = cut && !w->limited;
        w->active = 0;
    }
    w->step++;
    return 1;
}

/* Both walks' per-owner inputs checked against the buffers they index. */
static int walk_inputs_ok(const int64_t *chain, int64_t m, const int64_t *lo, int64_t n, const int64_t *payload,
                          int64_t segs, int64_t buflen)
{
    if (lo[0] != 0 || lo[n] != m)
        return 0;
    for (int64_t o = 0; o < n; o++)
        if (lo[o + 1] < lo[o])
            return 0;
    for (int64_t j = 0; j < m; j++) {
        int64_t rel = chain[j], seg = chain[m + j], len = chain[2 * m + j];
        if (seg < 0 || seg >= segs || len < 0 || rel < 0 || payload[seg] < 0 || payload[seg] > buflen ||
            len > buflen - payload[seg])
            return 0;
    }
    return 1;
}

static hwalk hwalk_init(const int64_t *chain, int64_t m, const int64_t *lo, const int64_t *own, int64_t n, int64_t o)
{
    hwalk w;
    w.rel = chain;
    w.seg = chain + m;
    w.len = chain + 2 * m;
    w.lo = lo[o];
    w.hi = lo[o + 1];
    w.end = own[o];
    w.beyond = own[n + o];
    w.broken = own[2 * n + o] != 0;
    w.limited = own[3 * n + o] != 0;
    w.pos = 0;
    w.active = w.end > 0 && w.hi > w.lo;
    w.step = 0;
    w.cut = 0;
    return w;
}

/* tls13_walk(buf, payload, base, record_max, t_hello, s_chain, s_lo, s_own, c_chain, c_lo, c_own,
 *            s_out, c_out, cut) -> (server records, client records)
 *
 * window_flights.tls13_window_flights' loop for every owner o (a TLS 1.3 handshake): the server's and
 * the client's record headers walked a record at a time together, each direction halted as soon as
 * the records walked decide its flight, by the same rules (records.HeaderWalk.step per record, the
 * loop's s_max/t_c1/s_next/c_max per owner). Owners are independent, so each is walked to its end
 * before the next. Inputs: buf (uint8), payload (int64, per window segment), base (the capture
 * position of segment 0), t_hello (int64 n); per direction a chain (int64 (3, m): rel, seg, len,
 * grouped by owner in stream order, pieces lo[o]..lo[o+1]) and per owner (int64 (4, n): end,
 * beyond, broken, limited). Outputs: per direction int64 (4, n * 25): owner, kind, length, arrival
 * of every record walked, grouped by owner in step order; cut (uint8 (2, n): server, client). */
static PyObject *tls13_walk(PyObject *self, PyObject *args)
{
    PyObject *o[14];
    long long base, record_max;
    if (!PyArg_ParseTuple(args, "OOLLOOOOOOOOOO", &o[0], &o[1], &base, &record_max, &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8], &o[9], &o[10], &o[11]))
        return NULL;
    static const Py_ssize_t size[12] = {1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1};
    static const char *name[12] = {"buf", "payload", "t_hello", "s_chain", "s_lo", "s_own", "c_chain", "c_lo",
                                   "c_own", "s_out", "c_out", "cut"};
    Py_buffer v[12];
    int got = 0;
    for (; got < 12; got++) {
        if (get_buffer(o[got], &v[got], got >= 9, size[got], name[got]) < 0)
            goto fail;
    }
    const int64_t n = (int64_t)(v[2].len / 8), segs = (int64_t)(v[1].len / 8);
    const int64_t sm = (int64_t)(v[3].len / 24), cm = (int64_t)(v[6].len / 24);
    if (v[3].len != sm * 24 || v[6].len != cm * 24 || v[4].len != (n + 1) * 8 || v[7].len != (n + 1) * 8 ||
        v[5].len != n * 32 || v[8].len != n * 32 || v[9].len != n * 32 * WALK_SLOTS ||
        v[10].len != n * 32 * WALK_SLOTS || v[11].len != 2 * n) {
        PyErr_SetString(PyExc_ValueError, "tls13_walk: arrays do not match the owners");
        goto fail;
    }
    const int64_t *payload = v[1].buf;
    if (!walk_inputs_ok(v[3].buf, sm, v[4].buf, n, payload, segs, (int64_t)v[0].len) ||
        !walk_inputs_ok(v[6].buf, cm, v[7].buf, n, payload, segs, (int64_t)v[0].len)) {
        PyErr_SetString(PyExc_ValueError, "tls13_walk: a chain lies outside the window's segments");
        goto fail;
    }
    const int64_t *t_hello = v[2].buf;
    int64_t *so = v[9].buf, *co = v[10].buf;
    uint8_t *cut = v[11].buf;
    const int64_t slots = n * WALK_SLOTS;
    int64_t sc = 0, cc = 0;
    hsrc src = {(const uint8_t *)v[0].buf, payload, (int64_t)base, (int64_t)record_max};
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n; i++) {
        hwalk s = hwalk_init(v[3].buf, sm, v[4].buf, v[5].buf, n, i);
        hwalk c = hwalk_init(v[6].buf, cm, v[7].buf, v[8].buf, n, i);
        int64_t s_max = -1, s_next = -1, c_max = -1, t_c1 = WALK_NEVER;
        int s_halt = 0, c_halt = 0;
        for (;;) {
            if (s_halt)
                s.active = 0;
            if (c_halt)
                c.active = 0;
            if (!s.active && !c.active)
                break;
            int64_t sk, sl, sw, ck, cl, cw;
            int s_step = s.step, c_step = c.step;
            int s_did = hwalk_step(&src, &s, &sk, &sl, &sw);
            int c_did = hwalk_step(&src, &c, &ck, &cl, &cw);
            if (s_did) {
                so[sc] = i, so[slots + sc] = sk, so[2 * slots + sc] = sl, so[3 * slots + sc] = sw;
                sc++;
                if (s_step >= 1 && sk != KIND_UNKNOWN) {
                    s_max = sw > s_max ? sw : s_max;
                    if (sk != KIND_QUIET)
                        s_next = sw > s_next ? sw : s_next;
                }
            }
            if (c_did) {
                co[cc] = i, co[slots + cc] = ck, co[2 * slots + cc] = cl, co[3 * slots + cc] = cw;
                cc++;
                if (c_step >= 1) {
                    if (ck == 23 && cw > t_hello[i] && t_c1 == WALK_NEVER)
                        t_c1 = cw;
                    if (ck != KIND_UNKNOWN && t_c1 != WALK_NEVER)
                        c_max = cw > c_max ? cw : c_max;
                }
            }
            s_halt = s_max > t_c1;
            c_halt = !s.active && t_c1 != WALK_NEVER && s_next > t_c1 && c_max > s_max;
        }
        cut[i] = (uint8_t)s.cut;
        cut[n + i] = (uint8_t)c.cut;
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 12; k++)
        PyBuffer_Release(&v[k]);
    return Py_BuildValue("LL", (long long)sc, (long long)cc);
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&v[k]);
    return NULL;
}

/* ---- module ---------------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"walk_pcap", walk_pcap, METH_VARARGS, "Classic pcap record starts from `at` (see ccore.py)."},
    {"pcap_fields", pcap_fields, METH_VARARGS, "Captured lengths and timestamps of pcap records (see ccore.py)."},
    {"walk_pcapng", walk_pcapng, METH_VARARGS, "pcapng packet block starts from `at` (see ccore.py)."},
    {"decode", decode, METH_VARARGS, "Link/IP/TCP/UDP headers of a batch into a (13, n) int64 array."},
    {"flow_hash", flow_hash, METH_VARARGS, "64-bit flow keys of packets.flow_hash."},
    {"gather_slices", gather_slices, METH_VARARGS, "Concatenate byte ranges of a buffer into out (see ccore.py)."},
    {"hello_walk", hello_walk, METH_VARARGS, "Walk ClientHello/ServerHello bodies like hello_batch.py (see ccore.py)."},
    {"flight_walk", flight_walk, METH_VARARGS, "Walk assembled TLS flights like flight.py's _walk (see ccore.py)."},
    {"tls13_walk", tls13_walk, METH_VARARGS, "TLS 1.3 flight record walks like window_flights.py (see ccore.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ccore", "The compiled capture core (see tlsdetect/readers/pcap/ccore.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ccore(void)
{
    return PyModule_Create(&module);
}
