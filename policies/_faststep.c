/* policies._faststep: a closed bucket's step in C, for the usual job (PRODUCT §8 evaluation budget).
 *
 * policies/engine.py `step` handles a closed bucket (an Observation) itself, in Python; `bucket(plan,
 * state, obs, now, mode)` here does the same for the usual case and answers None for everything else, which
 * then takes the Python code unchanged. The usual case, checked before anything is built:
 *
 *   - the compiled job's plan exists (`engine._fast_plan`): only threshold rules without bands and target
 *     rules, float bounds and targets, no schedule window rules (the step's windows are empty);
 *   - the event is an exact Observation at `now`, its count not negative; the mode is active or dry-run
 *     (paused, an unknown mode, any other event: Python, which also says what is wrong);
 *   - the state is an exact JobState whose slots are all set, its streaks / alarms / fires exact dicts, its streaks exact Streaks of ints, its
 *     `recent` an exact list of (float or int time, int count) pairs;
 *   - the observation's values an exact dict whose rule values are floats (or None, or missing), `now`
 *     a float, every count an int that fits in 62 bits.
 *
 * Then, in the order of engine.step and with the same arithmetic and the same objects' types: each rule's
 * proposal (threshold.propose_threshold, target.propose_target: the same Proposal, QuietThresholdProposal
 * and TargetProposal tuples, the same inputs), combine, stabilize (behavior.stabilize: the pruned history
 * with this proposal, the Stabilized limit and its text), steps 3–6 as behavior.apply_limits runs them
 * (the flapping guard through behavior.flapping_guard itself, called only when apply_limits would; max
 * step, cooldown, deployment and bounds here, their texts from the plan or formatted as Python's
 * `:.6g`), the reasons (engine._reasons), the Decision and the next JobState.
 * tests/policies/test_faststep.py drives random documents, states and buckets through both and compares
 * every decision and state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>

#define MAX_RULES 16
#define BIG 4000000000000000000.0 /* beyond this a count is not the usual case */

typedef struct {
    int ready;
    PyTypeObject *obs_t, *state_t, *decision_t, *proposal_t, *quiet_t, *targetp_t, *limit_t, *streak_t;
    PyObject *zero, *int0;                                              /* threshold._ZERO, 0 */
    PyObject *r_out, *r_in, *r_within, *r_nodata, *r_stabilized, *r_dry, *r_max_step, *r_cooldown, *r_deployment,
        *r_max_instances, *r_min_instances; /* reason codes */
    PyObject *f_guard, *f_step_count;
    double eps;
    Py_ssize_t s_count, s_last_change_at, s_last_bucket, s_streaks, s_recent, s_alarms, s_fires, s_created_at,
        s_predictive;
    PyObject *k_value, *k_streak_out, *k_streak_in, *k_above, *k_below, *k_consecutive, *k_step, *k_band,
        *k_target, *kind_threshold, *kind_target, *t_bucket, *m_dry;
} Ctx;

static Ctx C;

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

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

static int
tuple_like(PyTypeObject *t)
{
    if (!PyType_IsSubtype(t, &PyTuple_Type) || t->tp_basicsize != PyTuple_Type.tp_basicsize ||
        t->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_Format(PyExc_TypeError, "%s is not a tuple subclass without fields of its own", t->tp_name);
        return 0;
    }
    return 1;
}

static PyObject *
setup(PyObject *self, PyObject *args)
{
    PyTypeObject *ot, *st, *dt, *pt, *qt, *tt, *lt, *skt;
    PyObject *zero, *reasons, *funcs;
    double eps;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!OO!O!d", &PyType_Type, &ot, &PyType_Type, &st, &PyType_Type, &dt,
                          &PyType_Type, &pt,
                          &PyType_Type, &qt, &PyType_Type, &tt, &PyType_Type, &lt, &PyType_Type, &skt, &zero,
                          &PyTuple_Type, &reasons, &PyTuple_Type, &funcs, &eps))
        return NULL;
    if (PyTuple_GET_SIZE(reasons) != 11 || PyTuple_GET_SIZE(funcs) != 2) {
        PyErr_SetString(PyExc_TypeError, "setup: 11 reason codes and 2 functions");
        return NULL;
    }
    if (!tuple_like(ot) || !tuple_like(dt) || !tuple_like(pt) || !tuple_like(qt) || !tuple_like(tt) || !tuple_like(lt) ||
        !tuple_like(skt))
        return NULL;
    Ctx c = {0};
    if (offset_of(st, "count", &c.s_count) || offset_of(st, "last_change_at", &c.s_last_change_at) ||
        offset_of(st, "last_bucket", &c.s_last_bucket) || offset_of(st, "streaks", &c.s_streaks) ||
        offset_of(st, "recent", &c.s_recent) || offset_of(st, "alarms", &c.s_alarms) ||
        offset_of(st, "fires", &c.s_fires) || offset_of(st, "created_at", &c.s_created_at) ||
        offset_of(st, "predictive", &c.s_predictive))
        return NULL;
    c.obs_t = ot;
    c.state_t = st;
    c.decision_t = dt;
    c.proposal_t = pt;
    c.quiet_t = qt;
    c.targetp_t = tt;
    c.limit_t = lt;
    c.streak_t = skt;
    c.zero = zero;
    c.r_out = PyTuple_GET_ITEM(reasons, 0);
    c.r_in = PyTuple_GET_ITEM(reasons, 1);
    c.r_within = PyTuple_GET_ITEM(reasons, 2);
    c.r_nodata = PyTuple_GET_ITEM(reasons, 3);
    c.r_stabilized = PyTuple_GET_ITEM(reasons, 4);
    c.r_dry = PyTuple_GET_ITEM(reasons, 5);
    c.r_max_step = PyTuple_GET_ITEM(reasons, 6);
    c.r_cooldown = PyTuple_GET_ITEM(reasons, 7);
    c.r_deployment = PyTuple_GET_ITEM(reasons, 8);
    c.r_max_instances = PyTuple_GET_ITEM(reasons, 9);
    c.r_min_instances = PyTuple_GET_ITEM(reasons, 10);
    for (Py_ssize_t i = 0; i < 11; i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(reasons, i))) {
            PyErr_SetString(PyExc_TypeError, "setup: reason codes are str");
            return NULL;
        }
    c.f_guard = PyTuple_GET_ITEM(funcs, 0);
    c.f_step_count = PyTuple_GET_ITEM(funcs, 1);
    c.eps = eps;
    if ((c.int0 = PyLong_FromLong(0)) == NULL)
        return NULL;
#define INTERN(field, text)                                                                                        \
    if ((c.field = PyUnicode_InternFromString(text)) == NULL)                                                     \
        return NULL;
    INTERN(k_value, "value");
    INTERN(k_streak_out, "streak_out");
    INTERN(k_streak_in, "streak_in");
    INTERN(k_above, "above");
    INTERN(k_below, "below");
    INTERN(k_consecutive, "consecutive");
    INTERN(k_step, "step");
    INTERN(k_band, "band");
    INTERN(k_target, "target");
    INTERN(kind_threshold, "threshold");
    INTERN(kind_target, "target");
    INTERN(t_bucket, "bucket");
    INTERN(m_dry, "dry-run");
#undef INTERN
    /* kept for the life of the process (setup runs once per import) */
    PyObject *keep[] = {(PyObject *)ot, (PyObject *)st, (PyObject *)dt, (PyObject *)pt, (PyObject *)qt, (PyObject *)tt,
                        (PyObject *)lt, (PyObject *)skt, zero, reasons, funcs};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        Py_INCREF(keep[i]);
    c.ready = 1;
    C = c;
    Py_RETURN_NONE;
}

/* A Python int as a long long; *ok = 0 when it is not an exact int within BIG. */
static inline long long
as_ll(PyObject *o, int *ok)
{
    if (o == NULL || !PyLong_CheckExact(o)) {
        *ok = 0;
        return 0;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred()) || v > (long long)BIG || v < -(long long)BIG) {
        PyErr_Clear();
        *ok = 0;
        return 0;
    }
    return v;
}

/* A float, or an int that a double holds exactly, as a double; *ok = 0 otherwise. */
static inline double
as_time(PyObject *o, int *ok)
{
    if (o != NULL && PyFloat_CheckExact(o))
        return PyFloat_AS_DOUBLE(o);
    int k = 1;
    long long v = as_ll(o, &k);
    if (!k || v > 9007199254740992LL || v < -9007199254740992LL) {
        *ok = 0;
        return 0.0;
    }
    return (double)v;
}

/* A tuple of `type` from n new references (all of them consumed, even on failure). */
static PyObject *
make(PyTypeObject *type, Py_ssize_t n, PyObject **items)
{
    PyObject *o = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    o = type == &PyTuple_Type ? PyTuple_New(n) : type->tp_alloc(type, n);
    if (o == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(o, i, items[i]);
    return o;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static inline PyObject *
ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

/* A (count, limit or None) answer of one of behavior's functions: the count into *d, the limit appended. */
static int
take_limit(PyObject *res, long long *d, PyObject **d_obj, PyObject *limits, int *fallback)
{
    if (res == NULL)
        return -1;
    if (!PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 2) {
        Py_DECREF(res);
        *fallback = 1;
        return 0;
    }
    int ok = 1;
    PyObject *n = PyTuple_GET_ITEM(res, 0), *hit = PyTuple_GET_ITEM(res, 1);
    long long v = as_ll(n, &ok);
    if (!ok) {
        Py_DECREF(res);
        *fallback = 1;
        return 0;
    }
    *d = v;
    Py_SETREF(*d_obj, ref(n));
    if (hit != Py_None && PyList_Append(limits, hit) < 0) {
        Py_DECREF(res);
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Limit(code, *d_obj, after, detail) appended to `limits` (after and detail: new references, consumed);
   *d_obj becomes `after`. */
static int
add_limit(PyObject *limits, PyObject *code, PyObject **d_obj, PyObject *after, PyObject *detail)
{
    PyObject *it[] = {ref(code), ref(*d_obj), after == NULL ? NULL : ref(after), detail};
    PyObject *hit = make(C.limit_t, 4, it);
    if (hit == NULL) {
        Py_XDECREF(after);
        return -1;
    }
    int r = PyList_Append(limits, hit);
    Py_DECREF(hit);
    Py_SETREF(*d_obj, after);
    return r;
}

static int
add_unique(PyObject *out, PyObject *reason)
{
    int has = PySequence_Contains(out, reason);
    if (has < 0)
        return -1;
    return has ? 0 : PyList_Append(out, reason);
}

/* bucket(plan, state, obs, now, mode) -> (Decision, JobState), or None: not the usual case. */
static PyObject *
bucket(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "bucket(plan, state, obs, now, mode)");
        return NULL;
    }
    if (!C.ready) {
        PyErr_SetString(PyExc_RuntimeError, "policies._faststep: setup() was not called");
        return NULL;
    }
    PyObject *plan = args[0], *state = args[1], *obs = args[2], *now_o = args[3], *mode = args[4];
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 23 || Py_TYPE(state) != C.state_t ||
        Py_TYPE(obs) != C.obs_t || PyTuple_GET_SIZE(obs) != 8 || !PyFloat_CheckExact(now_o) ||
        !PyUnicode_CheckExact(mode))
        Py_RETURN_NONE;
    /* a bucket evaluated at another time than its own, a negative count: Python says what is wrong */
    PyObject *obs_now = PyTuple_GET_ITEM(obs, 0);
    if (!PyFloat_CheckExact(obs_now) || PyFloat_AS_DOUBLE(obs_now) != PyFloat_AS_DOUBLE(now_o))
        Py_RETURN_NONE;
    int ok = 1;
    const double now = PyFloat_AS_DOUBLE(now_o);
    PyObject *bucket_o = PyTuple_GET_ITEM(obs, 1), *current_o = PyTuple_GET_ITEM(obs, 2),
             *ready_o = PyTuple_GET_ITEM(obs, 3), *values = PyTuple_GET_ITEM(obs, 4),
             *dep_o = PyTuple_GET_ITEM(obs, 6);
    const long long cur = as_ll(current_o, &ok), rdy = as_ll(ready_o, &ok);
    if (!ok || cur < 0 || !PyDict_CheckExact(values))
        Py_RETURN_NONE;
    int dry;
    if (PyUnicode_CompareWithASCIIString(mode, "active") == 0)
        dry = 0;
    else if (PyUnicode_CompareWithASCIIString(mode, "dry-run") == 0)
        dry = 1;
    else
        Py_RETURN_NONE;
    PyObject *count_o = FIELD(state, C.s_count), *last_o = FIELD(state, C.s_last_change_at),
             *streaks_o = FIELD(state, C.s_streaks), *recent = FIELD(state, C.s_recent),
             *alarms_o = FIELD(state, C.s_alarms), *fires_o = FIELD(state, C.s_fires),
             *created_o = FIELD(state, C.s_created_at);
    if (count_o == NULL || last_o == NULL || streaks_o == NULL || recent == NULL || alarms_o == NULL ||
        fires_o == NULL || created_o == NULL || FIELD(state, C.s_last_bucket) == NULL ||
        FIELD(state, C.s_predictive) == NULL || !PyDict_CheckExact(streaks_o) || !PyDict_CheckExact(alarms_o) ||
        !PyDict_CheckExact(fires_o) || !PyList_CheckExact(recent))
        Py_RETURN_NONE;
    /* the plan (engine._fast_plan) */
    PyObject *job = PyTuple_GET_ITEM(plan, 0), *specs = PyTuple_GET_ITEM(plan, 1),
             *in_text = PyTuple_GET_ITEM(plan, 6),
             *in_suffix = PyTuple_GET_ITEM(plan, 7), *out_text = PyTuple_GET_ITEM(plan, 8),
             *out_step_o = PyTuple_GET_ITEM(plan, 9), *in_step_o = PyTuple_GET_ITEM(plan, 10),
             *lo_o = PyTuple_GET_ITEM(plan, 13), *hi_o = PyTuple_GET_ITEM(plan, 14),
             *out_step_text = PyTuple_GET_ITEM(plan, 15), *in_step_text = PyTuple_GET_ITEM(plan, 16),
             *out_cd_text = PyTuple_GET_ITEM(plan, 17), *in_cd_text = PyTuple_GET_ITEM(plan, 18),
             *deploy_suffix = PyTuple_GET_ITEM(plan, 20), *max_text = PyTuple_GET_ITEM(plan, 21),
             *min_text = PyTuple_GET_ITEM(plan, 22);
    const double horizon = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 3)),
                 in_window = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 4)),
                 out_window = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 5)),
                 out_cd = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 11)),
                 in_cd = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 12)),
                 deploy_timeout = PyFloat_AsDouble(PyTuple_GET_ITEM(plan, 19));
    if (PyErr_Occurred())
        return NULL;
    const int has_out_step = out_step_o != Py_None, has_in_step = in_step_o != Py_None;
    const long long out_step = has_out_step ? as_ll(out_step_o, &ok) : 0,
                    in_step = has_in_step ? as_ll(in_step_o, &ok) : 0, lo = as_ll(lo_o, &ok),
                    hi = as_ll(hi_o, &ok);
    Py_ssize_t nspec = PyTuple_GET_SIZE(specs);
    if (!ok || !PyTuple_CheckExact(specs) || nspec > MAX_RULES)
        Py_RETURN_NONE;
    /* a count changed behind our back restarts every streak: then no streak is read */
    int read_streaks = count_o == Py_None;
    if (!read_streaks) {
        long long cnt = as_ll(count_o, &ok);
        if (!ok)
            Py_RETURN_NONE;
        read_streaks = cnt == cur;
    }
    /* every rule's value first: anything unusual goes to Python before anything is built */
    PyObject *raw[MAX_RULES];
    double val[MAX_RULES];
    int has_val[MAX_RULES];
    for (Py_ssize_t i = 0; i < nspec; i++) {
        PyObject *sp = PyTuple_GET_ITEM(specs, i);
        PyObject *v = PyDict_GetItemWithError(values, PyTuple_GET_ITEM(sp, 1));
        if (v == NULL && PyErr_Occurred())
            return NULL;
        raw[i] = v == NULL ? Py_None : v;
        has_val[i] = 0;
        val[i] = 0.0;
        if (v != NULL && v != Py_None) {
            if (!PyFloat_CheckExact(v))
                Py_RETURN_NONE;
            val[i] = PyFloat_AS_DOUBLE(v);
            has_val[i] = val[i] - val[i] == 0; /* NaN / inf: no data */
        }
    }
    /* `recent` checked through before it is read */
    Py_ssize_t nrec = PyList_GET_SIZE(recent);
    for (Py_ssize_t i = 0; i < nrec; i++) {
        PyObject *e = PyList_GET_ITEM(recent, i);
        if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) != 2)
            Py_RETURN_NONE;
        as_time(PyTuple_GET_ITEM(e, 0), &ok);
        as_ll(PyTuple_GET_ITEM(e, 1), &ok);
        if (!ok)
            Py_RETURN_NONE;
    }

    PyObject *result = NULL, *proposals = NULL, *streaks = NULL, *limits = NULL, *hist = NULL, *d_obj = NULL,
             *reasons = NULL, *guard = NULL;
    int fallback = 0;
    long long des[MAX_RULES];
    int has_des[MAX_RULES], nodata[MAX_RULES];
    proposals = PyList_New(nspec);
    streaks = PyDict_New();
    limits = PyList_New(0);
    if (proposals == NULL || streaks == NULL || limits == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < nspec; i++) {
        PyObject *sp = PyTuple_GET_ITEM(specs, i), *name = PyTuple_GET_ITEM(sp, 1), *p = NULL;
        has_des[i] = nodata[i] = 0;
        des[i] = 0;
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(sp, 0));
        if (kind == 0) { /* threshold: (0, name, above, below, out_consecutive, in_consecutive, out_step,
                            in_step, spec) */
            PyObject *above_o = PyTuple_GET_ITEM(sp, 2), *below_o = PyTuple_GET_ITEM(sp, 3);
            PyObject *st = C.zero;
            if (!has_val[i]) {
                PyObject *inputs = PyDict_New();
                if (inputs == NULL || PyDict_SetItem(inputs, C.k_value, Py_None) < 0 ||
                    PyDict_SetItem(inputs, C.k_streak_out, C.int0) < 0 ||
                    PyDict_SetItem(inputs, C.k_streak_in, C.int0) < 0) {
                    Py_XDECREF(inputs);
                    goto error;
                }
                PyObject *it[] = {ref(name), ref(C.kind_threshold), ref(Py_None), ref(C.r_nodata), inputs};
                p = make(C.proposal_t, 5, it);
                nodata[i] = 1;
                if (p == NULL || PyDict_SetItem(streaks, name, C.zero) < 0) {
                    Py_XDECREF(p);
                    goto error;
                }
                PyList_SET_ITEM(proposals, i, p);
                continue;
            }
            const double v = val[i];
            PyObject *streak = NULL;
            long long prev_out = 0, prev_in = 0;
            if (read_streaks) {
                streak = PyDict_GetItemWithError(streaks_o, name);
                if (streak == NULL && PyErr_Occurred())
                    goto error;
                if (streak == Py_None)
                    streak = NULL;
                if (streak != NULL) {
                    if (Py_TYPE(streak) != C.streak_t || PyTuple_GET_SIZE(streak) != 2) {
                        fallback = 1;
                        goto done;
                    }
                    prev_out = as_ll(PyTuple_GET_ITEM(streak, 0), &ok);
                    prev_in = as_ll(PyTuple_GET_ITEM(streak, 1), &ok);
                    if (!ok) {
                        fallback = 1;
                        goto done;
                    }
                }
            }
            const int has_above = above_o != Py_None, has_below = below_o != Py_None;
            const long long out = has_above && v > PyFloat_AS_DOUBLE(above_o) ? prev_out + 1 : 0;
            const long long in_ = has_below && v < PyFloat_AS_DOUBLE(below_o) ? prev_in + 1 : 0;
            if (streak != NULL && out == prev_out && in_ == prev_in) {
                st = ref(streak);
            } else {
                PyObject *it[] = {PyLong_FromLongLong(out), PyLong_FromLongLong(in_)};
                st = make(C.streak_t, 2, it);
                if (st == NULL)
                    goto error;
            }
            int r = PyDict_SetItem(streaks, name, st);
            Py_DECREF(st);
            if (r < 0)
                goto error;
            long long out_consec = as_ll(PyTuple_GET_ITEM(sp, 4), &ok),
                      in_consec = as_ll(PyTuple_GET_ITEM(sp, 5), &ok);
            if (!ok) {
                fallback = 1;
                goto done;
            }
            int side = has_above && out >= out_consec ? 1 : (has_below && in_ >= in_consec ? -1 : 0);
            if (side != 0) {
                PyObject *step = PyTuple_GET_ITEM(sp, side > 0 ? 6 : 7);
                long long n;
                if (PyLong_CheckExact(step)) {
                    n = as_ll(step, &ok);
                } else {
                    PyObject *res = PyObject_CallFunctionObjArgs(C.f_step_count, step, current_o, NULL);
                    if (res == NULL)
                        goto error;
                    n = as_ll(res, &ok);
                    Py_DECREF(res);
                }
                if (!ok) {
                    fallback = 1;
                    goto done;
                }
                long long d = side > 0 ? cur + n : (cur - n > 0 ? cur - n : 0);
                PyObject *inputs = PyDict_New();
                PyObject *ins[] = {ref(raw[i]), PyLong_FromLongLong(out), PyLong_FromLongLong(in_),
                                   ref(side > 0 ? above_o : below_o), ref(PyTuple_GET_ITEM(sp, side > 0 ? 4 : 5)),
                                   ref(step), ref(Py_None)};
                PyObject *keys[] = {C.k_value, C.k_streak_out, C.k_streak_in, side > 0 ? C.k_above : C.k_below,
                                    C.k_consecutive, C.k_step, C.k_band};
                int bad = inputs == NULL;
                for (int k = 0; k < 7; k++) {
                    if (!bad && (ins[k] == NULL || PyDict_SetItem(inputs, keys[k], ins[k]) < 0))
                        bad = 1;
                    Py_XDECREF(ins[k]);
                }
                if (bad) {
                    Py_XDECREF(inputs);
                    goto error;
                }
                PyObject *it[] = {ref(name), ref(C.kind_threshold), PyLong_FromLongLong(d),
                                  ref(side > 0 ? C.r_out : C.r_in), inputs};
                p = make(C.proposal_t, 5, it);
                has_des[i] = 1;
                des[i] = d;
            } else {
                PyObject *in3[] = {ref(raw[i]), PyLong_FromLongLong(out), PyLong_FromLongLong(in_)};
                PyObject *inputs = make(&PyTuple_Type, 3, in3);
                PyObject *it[] = {ref(name), ref(C.kind_threshold), ref(has_below ? current_o : Py_None),
                                  ref(C.r_within), inputs};
                p = make(C.quiet_t, 5, it);
                has_des[i] = has_below;
                des[i] = cur;
            }
        } else { /* target: (1, name, target, low, high, spec) */
            PyObject *target_o = PyTuple_GET_ITEM(sp, 2);
            if (!has_val[i]) {
                PyObject *inputs = PyDict_New();
                if (inputs == NULL || PyDict_SetItem(inputs, C.k_value, Py_None) < 0 ||
                    PyDict_SetItem(inputs, C.k_target, target_o) < 0) {
                    Py_XDECREF(inputs);
                    goto error;
                }
                PyObject *it[] = {ref(name), ref(C.kind_target), ref(Py_None), ref(C.r_nodata), inputs};
                p = make(C.proposal_t, 5, it);
                nodata[i] = 1;
            } else {
                const double v = val[i], target = PyFloat_AS_DOUBLE(target_o);
                const double ratio = v / target;
                PyObject *base_o = rdy > 0 ? ready_o : current_o;
                const long long base = rdy > 0 ? rdy : cur;
                PyObject *in4[] = {ref(raw[i]), ref(target_o), PyFloat_FromDouble(ratio), ref(base_o)};
                PyObject *inputs = make(&PyTuple_Type, 4, in4);
                if (inputs == NULL)
                    goto error;
                long long d = cur;
                PyObject *reason = C.r_within;
                if (!(PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(sp, 3)) <= ratio &&
                      ratio <= PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(sp, 4)))) {
                    const double x = (double)base * v / target - C.eps;
                    if (!(x - x == 0) || x > BIG || x < -BIG) {
                        Py_DECREF(inputs);
                        fallback = 1;
                        goto done;
                    }
                    d = (long long)ceil(x);
                    if (d < 0)
                        d = 0;
                    reason = d > cur ? C.r_out : (d < cur ? C.r_in : C.r_within);
                }
                PyObject *it[] = {ref(name), ref(C.kind_target),
                                  d == cur && reason == C.r_within ? ref(current_o) : PyLong_FromLongLong(d),
                                  ref(reason), inputs};
                p = make(C.targetp_t, 5, it);
                has_des[i] = 1;
                des[i] = d;
            }
        }
        if (p == NULL)
            goto error;
        PyList_SET_ITEM(proposals, i, p);
    }
    /* step 1: combine */
    long long proposed = cur;
    {
        int best_out = 0, best_in = 0, blocked = 0;
        long long bo = 0, bi = 0;
        for (Py_ssize_t i = 0; i < nspec; i++) {
            if (!has_des[i]) {
                if (nodata[i])
                    blocked = 1;
            } else if (des[i] > cur) {
                if (!best_out || des[i] > bo)
                    bo = des[i], best_out = 1;
            } else if (des[i] < cur) {
                if (!best_in || des[i] > bi)
                    bi = des[i], best_in = 1;
            } else {
                blocked = 1;
            }
        }
        if (best_out)
            proposed = bo;
        else if (best_in && !blocked)
            proposed = bi;
    }
    long long d = proposed;
    d_obj = proposed == cur ? ref(current_o) : PyLong_FromLongLong(proposed);
    if (d_obj == NULL)
        goto error;
    /* step 2: stabilization */
    if (horizon > 0) {
        const double cut = now - horizon;
        Py_ssize_t i = 0;
        while (i < nrec && as_time(PyTuple_GET_ITEM(PyList_GET_ITEM(recent, i), 0), &ok) <= cut)
            i++;
        hist = PyList_GetSlice(recent, i, nrec);
        if (hist == NULL)
            goto error;
        Py_ssize_t nh = PyList_GET_SIZE(hist);
        PyObject *pair[] = {ref(now_o), ref(d_obj)};
        PyObject *entry = make(&PyTuple_Type, 2, pair);
        if (entry == NULL)
            goto error;
        if (nh > 0 && as_ll(PyTuple_GET_ITEM(PyList_GET_ITEM(hist, nh - 1), 1), &ok) == proposed) {
            PyList_SetItem(hist, nh - 1, entry); /* steals entry */
        } else {
            int r = PyList_Append(hist, entry);
            Py_DECREF(entry);
            if (r < 0)
                goto error;
            nh++;
        }
        int in_side = proposed < cur && in_window > 0, out_side = !in_side && proposed > cur && out_window > 0;
        if (in_side || out_side) {
            const double cut_w = now - (in_side ? in_window : out_window);
            long long best = 0;
            int any = 0;
            for (Py_ssize_t k = 0; k < nh; k++) {
                PyObject *e = PyList_GET_ITEM(hist, k);
                if (as_time(PyTuple_GET_ITEM(e, 0), &ok) > cut_w) {
                    long long c = as_ll(PyTuple_GET_ITEM(e, 1), &ok);
                    if (!any || (in_side ? c > best : c < best))
                        best = c, any = 1;
                }
            }
            long long nw = in_side ? (cur < best ? cur : best) : (cur > best ? cur : best);
            if (nw != proposed) {
                PyObject *detail = in_side ? PyUnicode_FromFormat("%U%lld%U", in_text, best, in_suffix)
                                           : PyUnicode_FromFormat("%U%lld", out_text, best);
                PyObject *it[] = {ref(C.r_stabilized), ref(d_obj),
                                  nw == cur ? ref(current_o) : PyLong_FromLongLong(nw), detail};
                PyObject *hit = make(C.limit_t, 4, it);
                if (hit == NULL)
                    goto error;
                int r = PyList_Append(limits, hit);
                d = nw;
                Py_SETREF(d_obj, ref(PyTuple_GET_ITEM(hit, 2)));
                Py_DECREF(hit);
                if (r < 0)
                    goto error;
            }
        }
    } else {
        hist = PyList_New(0);
        if (hist == NULL)
            goto error;
    }
    if (d != cur) {
        /* step 3: the flapping guard, with the rules that have a finite value in this bucket */
        if (d < cur) {
            guard = PyList_New(0);
            if (guard == NULL)
                goto error;
            for (Py_ssize_t i = 0; i < nspec; i++) {
                if (!has_val[i])
                    continue;
                PyObject *sp = PyTuple_GET_ITEM(specs, i);
                PyObject *pair[] = {ref(PyTuple_GET_ITEM(sp, PyTuple_GET_SIZE(sp) - 1)), ref(raw[i])};
                PyObject *g = make(&PyTuple_Type, 2, pair);
                if (g == NULL || PyList_Append(guard, g) < 0) {
                    Py_XDECREF(g);
                    goto error;
                }
                Py_DECREF(g);
            }
            PyObject *res = PyObject_CallFunctionObjArgs(C.f_guard, current_o, d_obj, guard, lo_o, NULL);
            if (take_limit(res, &d, &d_obj, limits, &fallback) < 0)
                goto error;
            if (fallback)
                goto done;
        }
        /* step 4: max step (behavior.max_step) */
        if (has_out_step && d - cur > out_step) {
            if (add_limit(limits, C.r_max_step, &d_obj, PyLong_FromLongLong(cur + out_step), ref(out_step_text)) < 0)
                goto error;
            d = cur + out_step;
        } else if (has_in_step && cur - d > in_step) {
            if (add_limit(limits, C.r_max_step, &d_obj, PyLong_FromLongLong(cur - in_step), ref(in_step_text)) < 0)
                goto error;
            d = cur - in_step;
        }
        /* step 5: cooldown, then a running deployment (behavior.cooldown); the flapping guard may have
           brought the count back to the current one: then nothing holds */
        if (d != cur) {
            int held = 0;
            if (last_o != Py_None) {
                const double last = as_time(last_o, &ok), wait = d > cur ? out_cd : in_cd;
                if (!ok) {
                    fallback = 1;
                    goto done;
                }
                const double since = now - last;
                if (since < wait) {
                    char *left = PyOS_double_to_string(wait - since, 'g', 6, 0, NULL);
                    if (left == NULL)
                        goto error;
                    PyObject *detail = PyUnicode_FromFormat("%U%ss left", d > cur ? out_cd_text : in_cd_text, left);
                    PyMem_Free(left);
                    if (add_limit(limits, C.r_cooldown, &d_obj, ref(current_o), detail) < 0)
                        goto error;
                    d = cur;
                    held = 1;
                }
            }
            if (!held && dep_o != Py_None) {
                const double dep = as_time(dep_o, &ok);
                if (!ok) {
                    fallback = 1;
                    goto done;
                }
                if (now - dep < deploy_timeout) {
                    char *running = PyOS_double_to_string(now - dep, 'g', 6, 0, NULL);
                    if (running == NULL)
                        goto error;
                    PyObject *detail = PyUnicode_FromFormat("deployment running for %ss%U", running, deploy_suffix);
                    PyMem_Free(running);
                    if (add_limit(limits, C.r_deployment, &d_obj, ref(current_o), detail) < 0)
                        goto error;
                    d = cur;
                }
            }
        }
    }
    /* step 6: bounds (behavior.clamp) */
    if (d > hi) {
        if (add_limit(limits, C.r_max_instances, &d_obj, ref(hi_o), ref(max_text)) < 0)
            goto error;
        d = hi;
    } else if (d < lo) {
        if (add_limit(limits, C.r_min_instances, &d_obj, ref(lo_o), ref(min_text)) < 0)
            goto error;
        d = lo;
    }
    /* the reasons: each proposal's and each limit's code once, in order; DryRun last */
    reasons = PyList_New(0);
    if (reasons == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < nspec; i++)
        if (add_unique(reasons, PyTuple_GET_ITEM(PyList_GET_ITEM(proposals, i), 3)) < 0)
            goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(limits); i++) {
        PyObject *hit = PyList_GET_ITEM(limits, i);
        if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) < 1) {
            fallback = 1;
            goto done;
        }
        if (add_unique(reasons, PyTuple_GET_ITEM(hit, 0)) < 0)
            goto error;
    }
    if (dry && PyList_Append(reasons, C.r_dry) < 0)
        goto error;
    {
        /* the next state, every slot set (as engine.step sets them) */
        PyObject *alarms = PyDict_GET_SIZE(alarms_o) ? PyDict_Copy(alarms_o) : PyDict_New();
        PyObject *fires = PyDict_GET_SIZE(fires_o) ? PyDict_Copy(fires_o) : PyDict_New();
        PyObject *predictive = PyDict_New();
        PyObject *nxt = NULL, *decision = NULL;
        const int changed = d != cur;
        PyObject *new_streaks = changed ? PyDict_New() : ref(streaks);
        if (alarms == NULL || fires == NULL || predictive == NULL || new_streaks == NULL)
            goto state_fail;
        nxt = C.state_t->tp_alloc(C.state_t, 0);
        if (nxt == NULL)
            goto state_fail;
        FIELD(nxt, C.s_count) = ref(d_obj);
        FIELD(nxt, C.s_last_bucket) = ref(bucket_o);
        FIELD(nxt, C.s_recent) = ref(hist);
        FIELD(nxt, C.s_alarms) = alarms;
        FIELD(nxt, C.s_fires) = fires;
        FIELD(nxt, C.s_created_at) = ref(created_o == Py_None ? now_o : created_o);
        FIELD(nxt, C.s_predictive) = predictive;
        FIELD(nxt, C.s_last_change_at) = ref(changed ? now_o : last_o);
        FIELD(nxt, C.s_streaks) = new_streaks;
        {
            PyObject *it[] = {ref(job),       ref(now_o), ref(C.t_bucket), ref(current_o),
                              ref(d_obj),     ref(bucket_o), ref(proposals), ref(limits),
                              ref(reasons),   ref(mode),  ref(Py_None)};
            decision = make(C.decision_t, 11, it);
        }
        if (decision == NULL) {
            Py_DECREF(nxt);
            goto error;
        }
        result = PyTuple_New(2);
        if (result == NULL) {
            Py_DECREF(nxt);
            Py_DECREF(decision);
            goto error;
        }
        PyTuple_SET_ITEM(result, 0, decision);
        PyTuple_SET_ITEM(result, 1, nxt);
        goto done;
    state_fail:
        Py_XDECREF(alarms);
        Py_XDECREF(fires);
        Py_XDECREF(predictive);
        Py_XDECREF(new_streaks);
        goto error;
    }
error:
    result = NULL;
    fallback = 0;
done:
    Py_XDECREF(proposals);
    Py_XDECREF(streaks);
    Py_XDECREF(limits);
    Py_XDECREF(hist);
    Py_XDECREF(d_obj);
    Py_XDECREF(reasons);
    Py_XDECREF(guard);
    if (fallback) {
        Py_XDECREF(result);
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(Observation, JobState, Decision, Proposal, QuietThresholdProposal, TargetProposal, Limit, Streak, zero streak, "
     "reasons, (flapping_guard, step_count), eps): the types, codes and functions the step uses"},
    {"bucket", (PyCFunction)(void (*)(void))bucket, METH_FASTCALL,
     "bucket(plan, state, obs, now, mode) -> (Decision, JobState), or None when it is not the usual case"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "policies._faststep",
    "A closed bucket's step in C for the usual job (see policies/engine.py, step).", -1, methods,
};

PyMODINIT_FUNC
PyInit__faststep(void)
{
    return PyModule_Create(&module);
}
