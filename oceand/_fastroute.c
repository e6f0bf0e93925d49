/* oceand._fastroute: the ingest hot loop's common case in C (PRODUCT §8 ingest ratio).
 *
 * oceand/ingest.py `Ingestor._route` decides, for every item of a body whose series has a route, what
 * happens to it; `one(i, item, route)` there is the whole of that decision, in Python. `scan` looks every
 * item's route up in one pass; `route` runs the loop and does, itself, what the usual sample needs — a
 * GAUGE series feeding one rule of one job, a timestamp every job accepts, a bucket that is open — and
 * hands every other item to `one` unchanged (a counter, several targets, a refused series, a timestamp
 * out of bounds, a bucket not open yet):
 *
 *   - the route's counterType equals the item's; the route has a job (`jb`), no counter, no `more`;
 *   - the timestamp lies within the route's bounds (`check_ts`: ts in (0, 2 now], ts - now <= ahead,
 *     now - ts <= age);
 *   - the bucket of ts is open (`jb.open[start]`, start >= closed_upto);
 *   then, as `one` does: the series' last-seen period moves when ts is at or past the route's `fresh`;
 *   the instance's value for the rule becomes (ts, value) unless it holds a later one (value = 100 - v for
 *   an inverting route: cpu.idle -> cpu.used); an instance new in the bucket may complete it
 *   (JobBuckets.complete, here in C), and the job joins `completed`. Same objects, same arithmetic.
 *
 * Fields are read at their slot offsets: `setup` takes the classes (dataclasses with slots, a msgspec
 * Struct) and reads each field's member descriptor; the loop checks every object's exact type before it
 * reads one, and anything unexpected (a subclass, an unset slot, an int beyond 64 bits) goes to `one`.
 * tests/ingest/test_native.py drives random bodies through both ways and compares every bucket.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

typedef struct {
    PyTypeObject *route_t, *jb_t, *bucket_t, *item_t;
    /* Route */
    Py_ssize_t r_jb, r_rule, r_instance, r_invert, r_more, r_ctype, r_counter, r_ahead, r_age, r_fresh, r_slot;
    /* JobBuckets */
    Py_ssize_t j_period, j_open, j_closed_upto, j_expected, j_last_reporters, j_rules, j_reporting, j_job_level,
        j_job;
    /* OpenBucket */
    Py_ssize_t b_values;
    /* FalconItem */
    Py_ssize_t i_value, i_ctype, i_ts, i_endpoint, i_metric, i_tags;
    int ready;
} Layout;

static Layout L;

static int
offset_of(PyTypeObject *t, const char *name, Py_ssize_t *out)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)t, name);
    if (d == NULL)
        return -1;
    if (Py_TYPE(d) != &PyMemberDescr_Type) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", t->tp_name, name);
        Py_DECREF(d);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX && m->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", t->tp_name, name);
        Py_DECREF(d);
        return -1;
    }
    *out = m->offset;
    Py_DECREF(d);
    return 0;
}

/* Reusing the key tuple is safe while tuples do not cache their hash (CPython up to 3.13). */
#define REUSE_KEY (PY_VERSION_HEX < 0x030E0000)

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static PyObject *
setup(PyObject *self, PyObject *args)
{
    PyTypeObject *rt, *jt, *bt, *it;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &rt, &PyType_Type, &jt, &PyType_Type, &bt,
                          &PyType_Type, &it))
        return NULL;
    Layout l = {0};
    l.route_t = rt;
    l.jb_t = jt;
    l.bucket_t = bt;
    l.item_t = it;
    if (offset_of(rt, "jb", &l.r_jb) || offset_of(rt, "rule", &l.r_rule) ||
        offset_of(rt, "instance", &l.r_instance) || offset_of(rt, "invert", &l.r_invert) ||
        offset_of(rt, "more", &l.r_more) || offset_of(rt, "ctype", &l.r_ctype) ||
        offset_of(rt, "counter", &l.r_counter) || offset_of(rt, "ahead", &l.r_ahead) ||
        offset_of(rt, "age", &l.r_age) || offset_of(rt, "fresh", &l.r_fresh) ||
        offset_of(rt, "slot", &l.r_slot) || offset_of(jt, "expected", &l.j_expected) ||
        offset_of(jt, "last_reporters", &l.j_last_reporters) || offset_of(jt, "rules", &l.j_rules) ||
        offset_of(jt, "reporting", &l.j_reporting) || offset_of(jt, "job_level", &l.j_job_level) ||
        offset_of(jt, "job", &l.j_job) ||
        offset_of(jt, "period", &l.j_period) || offset_of(jt, "open", &l.j_open) ||
        offset_of(jt, "closed_upto", &l.j_closed_upto) || offset_of(bt, "values", &l.b_values) ||
        offset_of(it, "value", &l.i_value) || offset_of(it, "counterType", &l.i_ctype) ||
        offset_of(it, "timestamp", &l.i_ts) || offset_of(it, "endpoint", &l.i_endpoint) ||
        offset_of(it, "metric", &l.i_metric) || offset_of(it, "tags", &l.i_tags))
        return NULL;
    if (L.ready) {
        Py_DECREF(L.route_t);
        Py_DECREF(L.jb_t);
        Py_DECREF(L.bucket_t);
        Py_DECREF(L.item_t);
    }
    Py_INCREF(rt);
    Py_INCREF(jt);
    Py_INCREF(bt);
    Py_INCREF(it);
    l.ready = 1;
    L = l;
    Py_RETURN_NONE;
}

/* A Python int as a long long; 0 with *ok = 0 when it is not an exact int in range. */
static inline long long
as_ll(PyObject *o, int *ok)
{
    if (o == NULL || !PyLong_CheckExact(o)) {
        *ok = 0;
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    /* CPython 3.11's int: |ob_size| digits of PyLong_SHIFT bits (a timestamp has 2) */
    Py_ssize_t size = Py_SIZE(o);
    const digit *d = ((PyLongObject *)o)->ob_digit;
    if (size == 0)
        return 0;
    if (size == 1)
        return (long long)d[0];
    if (size == 2)
        return (long long)d[0] | ((long long)d[1] << PyLong_SHIFT);
    if (size == -1)
        return -(long long)d[0];
#endif
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        *ok = 0;
        return 0;
    }
    return v;
}

static inline double
as_double(PyObject *o, int *ok)
{
    if (o == NULL) {
        *ok = 0;
        return 0.0;
    }
    if (PyFloat_CheckExact(o))
        return PyFloat_AS_DOUBLE(o);
    if (PyLong_CheckExact(o)) {
        double d = PyLong_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            *ok = 0;
        }
        return d;
    }
    *ok = 0;
    return 0.0;
}

/* JobBuckets.complete(b) (oceand/ingest.py): 1 complete, 0 not, -1 error; the Python method itself for
   any field of an unexpected type. */
static int
complete(PyObject *jb, PyObject *b)
{
    PyObject *expected = FIELD(jb, L.j_expected), *rules = FIELD(jb, L.j_rules),
             *seen = FIELD(jb, L.j_reporting), *job_level = FIELD(jb, L.j_job_level),
             *values = FIELD(b, L.b_values);
    int ok = 1;
    long long want = as_ll(expected == Py_None ? FIELD(jb, L.j_last_reporters) : expected, &ok);
    if (!ok || rules == NULL || !PyList_CheckExact(rules) || values == NULL || !PyList_CheckExact(values) ||
        seen == NULL || (seen != Py_None && !PyList_CheckExact(seen)) || job_level == NULL ||
        (job_level != Py_None && !PyList_CheckExact(job_level)))
        goto python;
    if (want <= 0 || PyList_GET_SIZE(rules) == 0)
        return 0;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if ((seen != Py_None && PyList_GET_SIZE(seen) < n) ||
        (job_level != Py_None && PyList_GET_SIZE(job_level) < n))
        goto python;
    int full = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *per = PyList_GET_ITEM(values, i);
        if (!PyDict_CheckExact(per))
            goto python;
        Py_ssize_t got = PyDict_GET_SIZE(per);
        long long need = want;
        if (job_level != Py_None) {
            int one_value = PyObject_IsTrue(PyList_GET_ITEM(job_level, i));
            if (one_value < 0)
                return -1;
            if (one_value)
                need = 1;
        }
        if (got >= need) {
            full = 1;
            continue;
        }
        if (got || seen == Py_None)
            return 0;
        int reporting = PyObject_IsTrue(PyList_GET_ITEM(seen, i));
        if (reporting < 0)
            return -1;
        if (reporting)
            return 0;
    }
    return full;
python:;
    PyObject *r = PyObject_CallMethod(jb, "complete", "O", b);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* 1: the item was written (or its newer held value kept) here; 0: `one` must take it; -1: error. */
static int
fast_one(PyObject *item, PyObject *route, PyObject *ts_obj, int check_ts, double now, PyObject **key,
         long long *key_start, PyObject *seen, long long seen_step, PyObject *completed)
{
    if (Py_TYPE(route) != L.route_t || Py_TYPE(item) != L.item_t)
        return 0;
    PyObject *jb = FIELD(route, L.r_jb);
    if (jb == NULL || Py_TYPE(jb) != L.jb_t)
        return 0;
    PyObject *ctype = FIELD(route, L.r_ctype), *ictype = FIELD(item, L.i_ctype);
    if (ctype == NULL || ictype == NULL)
        return 0;
    if (ctype != ictype) {
        if (!PyUnicode_CheckExact(ctype) || !PyUnicode_CheckExact(ictype))
            return 0;
        int eq = PyUnicode_Compare(ctype, ictype);
        if (eq == -1 && PyErr_Occurred())
            return -1;
        if (eq != 0)
            return 0;
    }
    if (FIELD(route, L.r_counter) != Py_None)
        return 0;
    PyObject *more = FIELD(route, L.r_more);
    if (more == NULL || !PyTuple_CheckExact(more) || PyTuple_GET_SIZE(more) != 0)
        return 0;
    int ok = 1;
    long long ts = as_ll(ts_obj, &ok);
    if (check_ts) {
        double ahead = as_double(FIELD(route, L.r_ahead), &ok);
        double age = as_double(FIELD(route, L.r_age), &ok);
        /* exact while |ts| < 2**53, which the first test ensures for any usable timestamp */
        if (!ok || ts <= 0 || (double)ts > 2 * now || (double)ts - now > ahead || now - (double)ts > age)
            return 0;
    }
    long long fresh = as_ll(FIELD(route, L.r_fresh), &ok);
    long long period = as_ll(FIELD(jb, L.j_period), &ok);
    long long closed_upto = as_ll(FIELD(jb, L.j_closed_upto), &ok);
    Py_ssize_t rule = (Py_ssize_t)as_ll(FIELD(route, L.r_rule), &ok);
    if (!ok || ts <= 0 || period <= 0)
        return 0;
    long long start = ts - ts % period;
    if (start < closed_upto)
        return 0;
    PyObject *open = FIELD(jb, L.j_open);
    if (open == NULL || !PyDict_CheckExact(open))
        return 0;
    if (*key == NULL || *key_start != start) {
        PyObject *k = PyLong_FromLongLong(start);
        if (k == NULL)
            return -1;
        Py_XSETREF(*key, k);
        *key_start = start;
    }
    PyObject *b = PyDict_GetItemWithError(open, *key); /* borrowed */
    if (b == NULL)
        return PyErr_Occurred() ? -1 : 0; /* a new bucket: JobBuckets.add */
    if (Py_TYPE(b) != L.bucket_t)
        return 0;
    PyObject *values = FIELD(b, L.b_values);
    if (values == NULL || !PyList_CheckExact(values) || rule < 0 || rule >= PyList_GET_SIZE(values))
        return 0;
    PyObject *per = PyList_GET_ITEM(values, rule);
    PyObject *instance = FIELD(route, L.r_instance);
    if (!PyDict_CheckExact(per) || instance == NULL)
        return 0;
    PyObject *prev = PyDict_GetItemWithError(per, instance); /* borrowed; NULL: the instance's first */
    if (prev == NULL && PyErr_Occurred())
        return -1;
    long long held = 0;
    if (prev != NULL) {
        if (!PyTuple_CheckExact(prev) || PyTuple_GET_SIZE(prev) != 2)
            return 0;
        held = as_ll(PyTuple_GET_ITEM(prev, 0), &ok);
        if (!ok)
            return 0;
    }
    PyObject *invert = FIELD(route, L.r_invert);
    PyObject *v = FIELD(item, L.i_value);
    if (v == NULL || !PyFloat_CheckExact(v) || (invert != Py_True && invert != Py_False))
        return 0;

    /* Everything is known: the writes, in `one`'s order. First the series' last-seen period, when the
       sample is of a later one than its slot holds. */
    if (ts >= fresh) {
        long long slot = as_ll(FIELD(route, L.r_slot), &ok);
        Py_buffer view;
        if (!ok || slot < 0 || seen_step <= 0)
            return 0;
        if (PyObject_GetBuffer(seen, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            return 0;
        }
        if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "q") != 0 ||
            slot >= view.len / 8) {
            PyBuffer_Release(&view);
            return 0;
        }
        long long *last = (long long *)view.buf;
        long long p = ts / seen_step; /* ts > 0: C's division is Python's floor division */
        if (last[slot] > p)
            p = last[slot];
        last[slot] = p;
        PyBuffer_Release(&view);
        PyObject *f = PyLong_FromLongLong((p + 1) * seen_step);
        if (f == NULL)
            return -1;
        Py_XSETREF(FIELD(route, L.r_fresh), f);
    }
    if (prev != NULL && held > ts)
        return 1; /* the held value is newer: kept */
    PyObject *val;
    if (invert == Py_True) {
        val = PyFloat_FromDouble(100.0 - PyFloat_AS_DOUBLE(v));
        if (val == NULL)
            return -1;
    }
    else {
        val = Py_NewRef(v);
    }
    if (prev != NULL && Py_REFCNT(prev) == 1) {
        /* only the bucket holds the pair it replaces: reuse it (what PyDict_SetItem of a new pair
           leaves is the same: the pair's two items replaced, no one else can tell) */
        PyObject *old_ts = PyTuple_GET_ITEM(prev, 0), *old_v = PyTuple_GET_ITEM(prev, 1);
        PyTuple_SET_ITEM(prev, 0, Py_NewRef(ts_obj));
        PyTuple_SET_ITEM(prev, 1, val);
        Py_DECREF(old_ts);
        Py_DECREF(old_v);
        return 1;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(val);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, Py_NewRef(ts_obj));
    PyTuple_SET_ITEM(pair, 1, val);
    int rc = PyDict_SetItem(per, instance, pair);
    Py_DECREF(pair);
    if (rc < 0)
        return -1;
    if (prev != NULL)
        return 1;
    /* a new instance in the bucket: it may be complete now (JobBuckets.complete) */
    int full = complete(jb, b);
    if (full < 0)
        return -1;
    if (full && PySet_Add(completed, FIELD(jb, L.j_job)) < 0)
        return -1;
    return 1;
}

static PyObject *
scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* scan(items, watched, routes, missing) -> (found, unwatched, unrouted, missing, lo, hi) */
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan(items, watched, routes, missing)");
        return NULL;
    }
    PyObject *items = args[0], *watched = args[1], *routes = args[2], *missing = args[3];
    if (!PyList_CheckExact(items) || !PyAnySet_Check(watched) || !PyDict_CheckExact(routes)) {
        PyErr_SetString(PyExc_TypeError, "scan: items must be a list, watched a set, routes a dict");
        return NULL;
    }
    if (!L.ready) {
        PyErr_SetString(PyExc_RuntimeError, "scan: setup() was not called");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items), unwatched = 0, unrouted = 0, nmissing = 0, picked = 0;
    long long lo = 0, hi = 0;
    int exact = 1; /* every watched timestamp an int within 64 bits: lo and hi computed here */
    PyObject *found = PyList_New(n), *key = NULL;
    if (found == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (Py_TYPE(item) != L.item_t) {
            PyErr_SetString(PyExc_TypeError, "scan: items must be FalconItems");
            goto fail;
        }
        PyObject *metric = FIELD(item, L.i_metric), *endpoint = FIELD(item, L.i_endpoint),
                 *tags = FIELD(item, L.i_tags);
        if (metric == NULL || endpoint == NULL || tags == NULL) {
            PyErr_SetString(PyExc_TypeError, "scan: an item without endpoint, metric or tags");
            goto fail;
        }
        int w = PySet_Contains(watched, metric);
        if (w < 0)
            goto fail;
        if (!w) {
            PyList_SET_ITEM(found, i, Py_NewRef(Py_None)); /* a metric no job watches */
            unwatched++;
            continue;
        }
        /* one key tuple for the whole body, its items replaced per item (a lookup keeps no key) */
        if (key == NULL || Py_REFCNT(key) != 1 || !REUSE_KEY) {
            Py_XDECREF(key);
            key = PyTuple_Pack(3, endpoint, metric, tags);
            if (key == NULL)
                goto fail;
        }
        else {
            PyObject *o0 = PyTuple_GET_ITEM(key, 0), *o1 = PyTuple_GET_ITEM(key, 1),
                     *o2 = PyTuple_GET_ITEM(key, 2);
            PyTuple_SET_ITEM(key, 0, Py_NewRef(endpoint));
            PyTuple_SET_ITEM(key, 1, Py_NewRef(metric));
            PyTuple_SET_ITEM(key, 2, Py_NewRef(tags));
            Py_DECREF(o0);
            Py_DECREF(o1);
            Py_DECREF(o2);
        }
        PyObject *r = PyDict_GetItemWithError(routes, key); /* borrowed */
        if (r == NULL) {
            if (PyErr_Occurred())
                goto fail;
            r = missing;
            nmissing++;
        }
        else if (r == Py_False) {
            unrouted++;
        }
        PyList_SET_ITEM(found, i, Py_NewRef(r));
        int ok = 1;
        long long ts = as_ll(FIELD(item, L.i_ts), &ok);
        if (!ok)
            exact = 0;
        else if (picked++ == 0)
            lo = hi = ts;
        else if (ts < lo)
            lo = ts;
        else if (ts > hi)
            hi = ts;
    }
    PyObject *plo, *phi;
    if (exact && picked) {
        plo = PyLong_FromLongLong(lo);
        phi = PyLong_FromLongLong(hi);
    }
    else {
        plo = Py_NewRef(Py_None); /* none watched, or a timestamp beyond 64 bits: the caller's min/max */
        phi = Py_NewRef(Py_None);
    }
    Py_XDECREF(key);
    key = NULL;
    if (plo == NULL || phi == NULL) {
        Py_XDECREF(plo);
        Py_XDECREF(phi);
        goto fail;
    }
    return Py_BuildValue("(NnnnNN)", found, unwatched, unrouted, nmissing, plo, phi);
fail:
    Py_XDECREF(key);
    Py_DECREF(found);
    return NULL;
}

static PyObject *
route(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* route(items, found, check_ts, now, one, completed, seen, seen_step) */
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "route(items, found, check_ts, now, one, completed, seen, seen_step)");
        return NULL;
    }
    PyObject *items = args[0], *found = args[1], *one = args[4], *completed = args[5], *seen = args[6];
    if (!PySet_Check(completed)) {
        PyErr_SetString(PyExc_TypeError, "route: completed must be a set");
        return NULL;
    }
    long long seen_step = PyLong_AsLongLong(args[7]);
    if (seen_step == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(items) || !PyList_CheckExact(found)) {
        PyErr_SetString(PyExc_TypeError, "route: items and found must be lists");
        return NULL;
    }
    int check_ts = PyObject_IsTrue(args[2]);
    if (check_ts < 0)
        return NULL;
    double now = PyFloat_AsDouble(args[3]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (!L.ready) {
        PyErr_SetString(PyExc_RuntimeError, "route: setup() was not called");
        return NULL;
    }
    PyObject *key = NULL;
    long long key_start = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        if (i >= PyList_GET_SIZE(found)) {
            PyErr_SetString(PyExc_ValueError, "route: found is shorter than items");
            goto fail;
        }
        PyObject *r = PyList_GET_ITEM(found, i);
        if (r == Py_False || r == Py_None)
            continue; /* no route: counted as unmatched before */
        PyObject *item = PyList_GET_ITEM(items, i);
        if (Py_TYPE(item) != L.item_t) {
            PyErr_SetString(PyExc_TypeError, "route: items must be FalconItems");
            goto fail;
        }
        int done = fast_one(item, r, FIELD(item, L.i_ts), check_ts, now, &key, &key_start, seen, seen_step,
                            completed);
        if (done < 0)
            goto fail;
        if (done)
            continue;
        /* `one` may change any route, bucket or dict: nothing borrowed is kept across the call */
        Py_INCREF(item);
        Py_INCREF(r);
        PyObject *idx = PyLong_FromSsize_t(i);
        PyObject *res = idx == NULL ? NULL : PyObject_CallFunctionObjArgs(one, idx, item, r, NULL);
        Py_XDECREF(idx);
        Py_DECREF(item);
        Py_DECREF(r);
        if (res == NULL)
            goto fail;
        Py_DECREF(res);
    }
    Py_XDECREF(key);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(key);
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(Route, JobBuckets, OpenBucket, FalconItem): read the classes' slot offsets"},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(items, watched, routes, missing) -> (found, unwatched, unrouted, missing, lo, hi)"},
    {"route", (PyCFunction)(void (*)(void))route, METH_FASTCALL,
     "route(items, found, check_ts, now, one, completed, seen, seen_step): the hot loop; `one(i, item, "
     "route)` for the rest"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "oceand._fastroute",
    "The ingest hot loop's common case in C (see oceand/ingest.py, Ingestor._route).", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastroute(void)
{
    return PyModule_Create(&module);
}
