/*
 * OTLP logs exports (ExportLogsServiceRequest, protobuf wire format) read straight into columns (issue 22).
 *
 * Why C: Envoy's OpenTelemetry logger sends each access-log entry as a LogRecord of ~30 string
 * attributes. Reading them through the generated Python classes (upb) costs ~17 us per record to
 * parse and ~130 us per record to walk (a wrapper object per KeyValue and per AnyValue), 6.8k
 * records/s in all; this walk follows the length fields once and makes one str per cell.
 *
 * Contract (wrapper and fallback: tlsdetect/readers/envoy/otlp_wire.py): otlp_columns(data) returns
 * (n, times, columns) where times holds n little-endian uint64 time_unix_nano and columns maps each
 * attribute key, in order of first appearance, to a list of n cells (str, None where a record lacks
 * the key; a key repeated in one record: the last value wins, as protobuf's map-like reading does).
 * It returns None for anything outside the common shape, and the caller then parses the message with
 * protobuf (which also refuses what is not protobuf): a record with a body, an attribute value that
 * is not a string (or unset, or given twice), a known field with an unexpected wire type, a group,
 * text that is not UTF-8, a malformed varint or a length past the end. Fields the mapping never reads
 * (resource, scope, severity, trace ids, ...) are skipped by their wire type, not validated.
 *
 * The bytes are untrusted: every read is bounds-checked; nothing is read past `end`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cur_t;

/* 0 on success; -1 on a truncated or over-long varint. */
static int varint(cur_t *c, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end)
            return -1;
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* A field's tag; -1 at a malformed one (field number 0 is malformed too). */
static int tag(cur_t *c, uint32_t *field, uint32_t *wire)
{
    uint64_t t;
    if (varint(c, &t) < 0 || (t >> 3) == 0 || (t >> 3) > 0x1FFFFFFF)
        return -1;
    *field = (uint32_t)(t >> 3);
    *wire = (uint32_t)(t & 7);
    return 0;
}

/* The body of a length-delimited field as its own cursor; -1 when it runs past the end. */
static int sub(cur_t *c, cur_t *out)
{
    uint64_t len;
    if (varint(c, &len) < 0 || len > (uint64_t)(c->end - c->p))
        return -1;
    out->p = c->p;
    out->end = c->p + len;
    c->p += len;
    return 0;
}

/* Skip a field of the given wire type; groups (3, 4) and unknown types are -1. */
static int skip(cur_t *c, uint32_t wire)
{
    uint64_t v;
    cur_t s;
    switch (wire) {
    case 0:
        return varint(c, &v);
    case 1:
        if (c->end - c->p < 8)
            return -1;
        c->p += 8;
        return 0;
    case 2:
        return sub(c, &s);
    case 5:
        if (c->end - c->p < 4)
            return -1;
        c->p += 4;
        return 0;
    default:
        return -1;
    }
}

#define SEEN 64

typedef struct {
    PyObject *columns;  /* dict: key -> list of cells */
    Py_ssize_t row;     /* the record being read */
    PyObject *times;    /* bytearray of uint64 */
    Py_ssize_t times_cap;
    /* The previous record's keys by position (borrowed columns): Envoy sends the same keys in the same
     * order in every record, so a key is matched by its bytes, without a str or a dict lookup. */
    const uint8_t *seen_key[SEEN];
    Py_ssize_t seen_len[SEEN];
    PyObject *seen_col[SEEN];
    int attr;  /* the attribute's position in the record being read */
} out_t;

/* Pad a column with None up to `n` cells. */
static int pad(PyObject *list, Py_ssize_t n)
{
    while (PyList_GET_SIZE(list) < n)
        if (PyList_Append(list, Py_None) < 0)
            return -1;
    return 0;
}

static int lookup(out_t *o, const uint8_t *k, Py_ssize_t klen, PyObject **out);

/* Put one cell (steals nothing): 0, -1 (fall back: a key that is not UTF-8), -2 (Python error). */
static int put(out_t *o, const uint8_t *k, Py_ssize_t klen, PyObject *value)
{
    int at = o->attr++;
    PyObject *col = NULL;
    if (at < SEEN && o->seen_col[at] != NULL && o->seen_len[at] == klen && memcmp(o->seen_key[at], k, klen) == 0)
        col = o->seen_col[at];
    else if (lookup(o, k, klen, &col) < 0)
        return PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError) ? -2 : -1;
    if (at < SEEN) {
        o->seen_key[at] = k;
        o->seen_len[at] = klen;
        o->seen_col[at] = col;
    }
    Py_ssize_t have = PyList_GET_SIZE(col);
    if (have == o->row + 1) {  /* the key again in this record: the last value wins */
        Py_INCREF(value);
        return PyList_SetItem(col, o->row, value) < 0 ? -2 : 0;
    }
    if (pad(col, o->row) < 0 || PyList_Append(col, value) < 0)
        return -2;
    return 0;
}

/* The column of a key (made when new; borrowed): 0, or -1 with an exception set. */
static int lookup(out_t *o, const uint8_t *k, Py_ssize_t klen, PyObject **out)
{
    PyObject *key = PyUnicode_DecodeUTF8((const char *)k, klen, NULL);
    if (key == NULL)
        return -1;  /* not UTF-8: the caller falls back (protobuf refuses it) */
    PyObject *col = PyDict_GetItemWithError(o->columns, key);
    if (col == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        col = PyList_New(0);
        if (col == NULL || PyDict_SetItem(o->columns, key, col) < 0) {
            Py_XDECREF(col);
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(col);  /* the dict holds it */
    }
    Py_DECREF(key);
    *out = col;
    return 0;
}

/* One KeyValue whose value is a string: 0, -1 (fall back), -2 (Python error). */
static int key_value(cur_t *c, out_t *o)
{
    const uint8_t *k = (const uint8_t *)"";
    Py_ssize_t klen = 0;
    const uint8_t *v = NULL;
    Py_ssize_t vlen = 0;
    int values = 0;
    uint32_t field, wire;
    while (c->p < c->end) {
        if (tag(c, &field, &wire) < 0)
            return -1;
        if (field == 1 || field == 2) {
            cur_t s;
            if (wire != 2 || sub(c, &s) < 0)
                return -1;
            if (field == 1) {
                k = s.p;
                klen = s.end - s.p;
                continue;
            }
            if (++values > 1)  /* a value given twice is merged by protobuf: let it */
                return -1;
            int kind = 0;
            while (s.p < s.end) {  /* AnyValue: only string_value (1) is read here */
                uint32_t f, w;
                if (tag(&s, &f, &w) < 0)
                    return -1;
                if (f >= 1 && f <= 7) {
                    cur_t t;
                    if (f != 1 || w != 2 || sub(&s, &t) < 0)
                        return -1;  /* another kind of value, or a wrong wire type */
                    kind = 1;
                    v = t.p;
                    vlen = t.end - t.p;
                } else if (skip(&s, w) < 0) {
                    return -1;
                }
            }
            if (kind != 1)
                return -1;  /* an unset value */
        } else if (skip(c, wire) < 0) {
            return -1;
        }
    }
    if (v == NULL)
        return -1;
    PyObject *value = PyUnicode_DecodeUTF8((const char *)v, vlen, NULL);
    if (value == NULL)
        return -1;
    int rc = put(o, k, klen, value);
    Py_DECREF(value);
    return rc;
}

/* One LogRecord. */
static int log_record(cur_t *c, out_t *o)
{
    uint64_t when = 0;
    uint32_t field, wire;
    o->attr = 0;
    while (c->p < c->end) {
        if (tag(c, &field, &wire) < 0)
            return -1;
        if (field == 1) {  /* time_unix_nano, fixed64 */
            if (wire != 1 || c->end - c->p < 8)
                return -1;
            when = 0;
            for (int i = 7; i >= 0; i--)
                when = (when << 8) | c->p[i];
            c->p += 8;
        } else if (field == 5) {  /* a body: the Python path merges its keys */
            return -1;
        } else if (field == 6) {
            cur_t s;
            if (wire != 2 || sub(c, &s) < 0)
                return -1;
            int rc = key_value(&s, o);
            if (rc < 0)
                return rc;
        } else if (field == 2 || field == 7) {  /* severity_number, dropped_attributes_count: varints */
            if (wire != 0 || skip(c, wire) < 0)
                return -1;
        } else if (field == 11) {  /* observed_time_unix_nano */
            if (wire != 1 || skip(c, wire) < 0)
                return -1;
        } else if (field == 8) {  /* flags, fixed32 */
            if (wire != 5 || skip(c, wire) < 0)
                return -1;
        } else if (field == 3 || field == 9 || field == 10 || field == 12) {  /* texts and ids */
            if (wire != 2 || skip(c, wire) < 0)
                return -1;
        } else if (skip(c, wire) < 0) {
            return -1;
        }
    }
    Py_ssize_t at = o->row * 8;
    if (at + 8 > o->times_cap) {
        Py_ssize_t cap = o->times_cap ? o->times_cap * 2 : 8 * 1024;
        if (PyByteArray_Resize(o->times, cap) < 0)
            return -2;
        o->times_cap = cap;
    }
    uint8_t *t = (uint8_t *)PyByteArray_AS_STRING(o->times) + at;
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(when >> (8 * i));
    o->row++;
    return 0;
}

/* A message (ExportLogsServiceRequest = 0, ResourceLogs = 1, ScopeLogs = 2) whose field 2 (field 1 for
 * the request) holds the next level; other fields are skipped. */
static int level(cur_t *c, out_t *o, int depth)
{
    uint32_t field, wire;
    uint32_t want = depth == 0 ? 1 : 2;
    while (c->p < c->end) {
        if (tag(c, &field, &wire) < 0)
            return -1;
        if (field == want) {
            cur_t s;
            if (wire != 2 || sub(c, &s) < 0)
                return -1;
            int rc = depth == 2 ? log_record(&s, o) : level(&s, o, depth + 1);
            if (rc < 0)
                return rc;
        } else if (depth > 0 && field == 1 && wire != 2) {  /* resource / scope: a message */
            return -1;
        } else if (skip(c, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *otlp_columns(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:otlp_columns", &buf))
        return NULL;
    out_t o;
    memset(&o, 0, sizeof o);
    o.columns = PyDict_New();
    o.times = PyByteArray_FromStringAndSize(NULL, 0);
    PyObject *result = NULL;
    if (o.columns == NULL || o.times == NULL)
        goto done;
    cur_t c = {(const uint8_t *)buf.buf, (const uint8_t *)buf.buf + buf.len};
    int rc = level(&c, &o, 0);
    if (rc == -2)
        goto done;
    if (rc == -1) {
        PyErr_Clear();  /* a UTF-8 error from a decode: fall back */
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *key, *col;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o.columns, &pos, &key, &col))
        if (pad(col, o.row) < 0)
            goto done;
    if (PyByteArray_Resize(o.times, o.row * 8) < 0)
        goto done;
    result = Py_BuildValue("(nOO)", o.row, o.times, o.columns);
done:
    Py_XDECREF(o.columns);
    Py_XDECREF(o.times);
    PyBuffer_Release(&buf);
    return result;
}

/* ---- Envoy's gRPC access-log service: StreamAccessLogsMessage ----------------------------------
 *
 * als_columns(data) -> (n, http, ints, texts) or None. ints: 9 * n little-endian int64, column by column:
 * start seconds, start nanos, remote port, local port, access_log_type, tls_version, cipher suite (-1:
 * none), request_method, response_code (-1: none); texts: 8 lists of n str: remote host, local host,
 * SNI, JA3, peer subject, peer issuer, the peer's URI SANs joined by ",", user agent ("" when unset).
 * Fields are read in wire order with protobuf's merge rules (a scalar given twice: the last; a message
 * given twice: merged; a oneof: the last member), so the cells equal the generated classes' reading.
 * None (the caller parses with protobuf): custom_tags, both http_logs and tcp_logs, a known field with
 * an unexpected wire type, text that is not UTF-8, anything malformed. */

#define ALS_INTS 9
#define ALS_TEXTS 8

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
} span_t;

typedef struct {
    int64_t v[ALS_INTS];
    span_t t[ALS_TEXTS - 1];  /* all texts but the URI SANs */
    PyObject *sans;           /* bytearray: the URI SANs joined by "," */
    int nsans;
} entry_t;

static int als_varint(cur_t *c, uint32_t wire, uint64_t *v)
{
    return wire == 0 ? varint(c, v) : -1;
}

static int als_text(cur_t *c, uint32_t wire, span_t *out)
{
    cur_t s;
    if (wire != 2 || sub(c, &s) < 0)
        return -1;
    out->p = s.p;
    out->n = s.end - s.p;
    return 0;
}

/* A message field's body; -1 at a wrong wire type. */
static int als_sub(cur_t *c, uint32_t wire, cur_t *out)
{
    return wire == 2 ? sub(c, out) : -1;
}

/* Address -> host span and port (a pipe or an internal address clears the socket address: a oneof). */
static int als_address(cur_t *c, span_t *host, int64_t *port)
{
    uint32_t f, w;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        if (f == 1) {
            cur_t s;
            if (als_sub(c, w, &s) < 0)
                return -1;
            while (s.p < s.end) {
                uint32_t g, x;
                uint64_t v;
                if (tag(&s, &g, &x) < 0)
                    return -1;
                if (g == 2) {
                    if (als_text(&s, x, host) < 0)
                        return -1;
                } else if (g == 3) {
                    if (als_varint(&s, x, &v) < 0)
                        return -1;
                    *port = (int64_t)(uint32_t)v;
                } else if (g == 4) {  /* named_port: port_value reads 0 */
                    span_t ignored;
                    if (als_text(&s, x, &ignored) < 0)
                        return -1;
                    *port = 0;
                } else if (skip(&s, x) < 0) {
                    return -1;
                }
            }
        } else if (f == 2 || f == 3) {
            if (w != 2 || skip(c, w) < 0)
                return -1;
            host->p = (const uint8_t *)"";
            host->n = 0;
            *port = 0;
        } else if (skip(c, w) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A UInt32Value wrapper's value (present, even when empty). */
static int als_u32(cur_t *c, uint32_t wire, int64_t *out)
{
    cur_t s;
    if (als_sub(c, wire, &s) < 0)
        return -1;
    if (*out < 0)
        *out = 0;
    while (s.p < s.end) {
        uint32_t f, w;
        uint64_t v;
        if (tag(&s, &f, &w) < 0)
            return -1;
        if (f == 1) {
            if (als_varint(&s, w, &v) < 0)
                return -1;
            *out = (int64_t)(uint32_t)v;
        } else if (skip(&s, w) < 0) {
            return -1;
        }
    }
    return 0;
}

static int als_peer(cur_t *c, entry_t *e)
{
    uint32_t f, w;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        if (f == 1) {  /* SubjectAltName: oneof uri (1) / dns (2) */
            cur_t s;
            span_t uri = {NULL, 0};
            if (als_sub(c, w, &s) < 0)
                return -1;
            while (s.p < s.end) {
                uint32_t g, x;
                span_t other;
                if (tag(&s, &g, &x) < 0)
                    return -1;
                if (g == 1) {
                    if (als_text(&s, x, &uri) < 0)
                        return -1;
                } else if (g == 2) {
                    if (als_text(&s, x, &other) < 0)
                        return -1;
                    uri.p = NULL;
                } else if (skip(&s, x) < 0) {
                    return -1;
                }
            }
            if (uri.p != NULL) {
                Py_ssize_t at = PyByteArray_GET_SIZE(e->sans);
                Py_ssize_t extra = uri.n + (e->nsans ? 1 : 0);
                if (PyByteArray_Resize(e->sans, at + extra) < 0)
                    return -2;
                char *dst = PyByteArray_AS_STRING(e->sans) + at;
                if (e->nsans)
                    *dst++ = ',';
                memcpy(dst, uri.p, uri.n);
                e->nsans++;
            }
        } else if (f == 2 || f == 3) {
            if (als_text(c, w, &e->t[f == 2 ? 4 : 5]) < 0)
                return -1;
        } else if (skip(c, w) < 0) {
            return -1;
        }
    }
    return 0;
}

static int als_tls(cur_t *c, entry_t *e)
{
    uint32_t f, w;
    uint64_t v;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        int rc = 0;
        cur_t s;
        switch (f) {
        case 1:
            rc = als_varint(c, w, &v);
            e->v[5] = (int64_t)(int32_t)v;
            break;
        case 2:
            rc = als_u32(c, w, &e->v[6]);
            break;
        case 3:
            rc = als_text(c, w, &e->t[2]);
            break;
        case 5:
            rc = als_sub(c, w, &s);
            if (rc == 0)
                rc = als_peer(&s, e);
            break;
        case 7:
            rc = als_text(c, w, &e->t[3]);
            break;
        default:
            rc = skip(c, w);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int als_timestamp(cur_t *c, entry_t *e)
{
    uint32_t f, w;
    uint64_t v;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        if (f == 1 || f == 2) {
            if (als_varint(c, w, &v) < 0)
                return -1;
            if (f == 1)
                e->v[0] = (int64_t)v;
            else
                e->v[1] = (int64_t)(int32_t)v;
        } else if (skip(c, w) < 0) {
            return -1;
        }
    }
    return 0;
}

static int als_common(cur_t *c, entry_t *e)
{
    uint32_t f, w;
    uint64_t v;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        int rc = 0;
        cur_t s;
        if (f == 2 || f == 3 || f == 4 || f == 5) {
            rc = als_sub(c, w, &s);
            if (rc == 0)
                rc = f == 2 ? als_address(&s, &e->t[0], &e->v[2])
                   : f == 3 ? als_address(&s, &e->t[1], &e->v[3])
                   : f == 4 ? als_tls(&s, e) : als_timestamp(&s, e);
        } else if (f == 22) {  /* custom tags: the Python path puts them under their own names */
            return -1;
        } else if (f == 33) {
            rc = als_varint(c, w, &v);
            e->v[4] = (int64_t)(int32_t)v;
        } else {
            rc = skip(c, w);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int als_http_part(cur_t *c, entry_t *e, int request)
{
    uint32_t f, w;
    uint64_t v;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        int rc;
        if (request && f == 1) {
            rc = als_varint(c, w, &v);
            e->v[7] = (int64_t)(int32_t)v;
        } else if (request && f == 6) {
            rc = als_text(c, w, &e->t[6]);
        } else if (!request && f == 1) {
            rc = als_u32(c, w, &e->v[8]);
        } else {
            rc = skip(c, w);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int als_entry(cur_t *c, entry_t *e)
{
    uint32_t f, w;
    while (c->p < c->end) {
        if (tag(c, &f, &w) < 0)
            return -1;
        int rc;
        cur_t s;
        if (f == 1 || f == 3 || f == 4) {  /* common_properties, request, response (TCP: 3, 4 are unknown) */
            rc = als_sub(c, w, &s);
            if (rc == 0)
                rc = f == 1 ? als_common(&s, e) : als_http_part(&s, e, f == 3);
        } else {
            rc = skip(c, w);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static PyObject *als_columns(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:als_columns", &buf))
        return NULL;
    PyObject *result = NULL, *ints = PyByteArray_FromStringAndSize(NULL, 0), *texts = PyTuple_New(ALS_TEXTS);
    PyObject *sans = PyByteArray_FromStringAndSize(NULL, 0);
    Py_ssize_t n = 0, cap = 0;
    int kind = 0, fallback = 0;
    if (ints == NULL || texts == NULL || sans == NULL)
        goto done;
    for (int i = 0; i < ALS_TEXTS; i++) {
        PyObject *l = PyList_New(0);
        if (l == NULL)
            goto done;
        PyTuple_SET_ITEM(texts, i, l);
    }
    cur_t c = {(const uint8_t *)buf.buf, (const uint8_t *)buf.buf + buf.len};
    uint32_t f, w;
    while (c.p < c.end && !fallback) {
        if (tag(&c, &f, &w) < 0) {
            fallback = 1;
            break;
        }
        if (f != 2 && f != 3) {
            if ((f == 1 && w != 2) || skip(&c, w) < 0)
                fallback = 1;
            continue;
        }
        cur_t list;
        if (kind && kind != (int)f) {  /* both HTTP and TCP entries: a oneof, let protobuf say which */
            fallback = 1;
            break;
        }
        kind = (int)f;
        if (als_sub(&c, w, &list) < 0) {
            fallback = 1;
            break;
        }
        while (list.p < list.end && !fallback) {
            uint32_t g, x;
            cur_t s;
            if (tag(&list, &g, &x) < 0) {
                fallback = 1;
                break;
            }
            if (g != 1) {
                if (skip(&list, x) < 0)
                    fallback = 1;
                continue;
            }
            if (als_sub(&list, x, &s) < 0) {
                fallback = 1;
                break;
            }
            entry_t e;
            memset(&e, 0, sizeof e);
            e.v[6] = -1;
            e.v[8] = -1;
            for (int i = 0; i < ALS_TEXTS - 1; i++)
                e.t[i].p = (const uint8_t *)"";
            if (PyByteArray_Resize(sans, 0) < 0)
                goto done;
            e.sans = sans;
            int rc = als_entry(&s, &e);
            if (rc == -2)
                goto done;
            if (rc < 0) {
                fallback = 1;
                break;
            }
            if ((n + 1) * 8 * ALS_INTS > cap) {
                cap = cap ? cap * 2 : 8 * ALS_INTS * 1024;
                if (PyByteArray_Resize(ints, cap) < 0)
                    goto done;
            }
            memcpy(PyByteArray_AS_STRING(ints) + n * 8 * ALS_INTS, e.v, sizeof e.v);  /* row-major here */
            for (int i = 0; i < ALS_TEXTS && !fallback; i++) {
                PyObject *s;
                if (i < 6)
                    s = PyUnicode_DecodeUTF8((const char *)e.t[i].p, e.t[i].n, NULL);
                else if (i == 6)
                    s = PyUnicode_DecodeUTF8(PyByteArray_AS_STRING(sans), PyByteArray_GET_SIZE(sans), NULL);
                else
                    s = PyUnicode_DecodeUTF8((const char *)e.t[6].p, e.t[6].n, NULL);
                if (s == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                        goto done;
                    PyErr_Clear();
                    fallback = 1;
                    break;
                }
                int bad = PyList_Append(PyTuple_GET_ITEM(texts, i), s);
                Py_DECREF(s);
                if (bad < 0)
                    goto done;
            }
            n++;
        }
    }
    if (fallback) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (PyByteArray_Resize(ints, n * 8 * ALS_INTS) < 0)
        goto done;
    result = Py_BuildValue("(niOO)", n, kind == 2 || kind == 0, ints, texts);
done:
    Py_XDECREF(ints);
    Py_XDECREF(texts);
    Py_XDECREF(sans);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"otlp_columns", otlp_columns, METH_VARARGS,
     "(n, times, columns) of an ExportLogsServiceRequest's string attributes, or None (see otlp_wire.py)."},
    {"als_columns", als_columns, METH_VARARGS,
     "(n, http, ints, texts) of a StreamAccessLogsMessage's entries, or None (see als_wire.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pushwire", "Pushed Envoy records read into columns (see otlp_wire.py, als_wire.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pushwire(void)
{
    return PyModule_Create(&module);
}
