/*
 * model.h - the mesh model's records (internal to controller/; include controller_int.h).
 *
 * Every object is reduced on upsert to a small "digest": the fields the compiler reads, in a
 * canonical form, so that an update that changes nothing the compiler reads is recognised by
 * json_equal() and dirties nothing. Records are grouped per namespace (struct m_nsc); global
 * maps give direct lookup of pods, services and identities by "ns/name".
 *
 * Derived state, maintained incrementally:
 *  - per Service: the meshed flag, the caller rule (who may call it: "reach"), the set of
 *    identities whose outbound section lists it (callers), and its compiled outbound block;
 *  - per identity (ns/sa of meshed pods): its pods, its outbound set and the compiled array.
 * Reach and outbound are two sides of one relation: svc->callers[ident] <=> ident->outset[svc].
 */
#ifndef WEFT_CONTROLLER_MODEL_H
#define WEFT_CONTROLLER_MODEL_H

enum mk {
    MK_NAMESPACE,
    MK_SERVICE,
    MK_SLICE,
    MK_POD,
    MK_SA,
    MK_TS,    /* mesh.weft.dev TrafficSplit */
    MK_SMITS, /* split.smi-spec.io TrafficSplit */
    MK_AP,
    MK_RP,
    MK_RG, /* specs.smi-spec.io HTTPRouteGroup */
    MK__COUNT
};

#define MARK ((void *)1)

struct m_ident;

struct m_pod {
    char *ns, *name, *key;
    json_t *d; /* {"sa","ip","labels","meshed","ports":[{"name","port"}]} */
    bool meshed;
    struct m_ident *ident; /* when meshed */
    json_t *inbound;       /* compiled inbound listeners, NULL when stale */
    struct chash in_hash;
    bool have_last;
    struct chash last; /* digest of the last document compiled */
};

struct m_svc {
    char *ns, *name, *key;
    json_t *d; /* {"clusterIP","headless","selector","ports":[{"name","port","targetPort",
                  "appProtocol"}]} (TCP ports only) */
    bool meshed;
    json_t *reach;      /* true (anyone: always in the scope "mesh"), false (no one) or array
                           of from-entries */
    struct map callers; /* ident key -> struct m_ident */
    json_t *block;      /* compiled outbound block, NULL until needed */
    struct chash block_hash;
};

struct m_slice {
    char *ns, *name, *key;
    json_t *d; /* {"service","ports":[{"name","port"}],"endpoints":[{"ip","ready","pod"}]} */
};

/* The custom resources share this head. */
struct m_cr {
    enum mk kind;
    char *ns, *name;
    long long gen;
    char *created;
    char *invalid; /* why the spec cannot be honoured, or NULL */
    json_t *d;     /* normalized spec (see each kind's parser) */
};

struct m_ident {
    char *key, *ns, *sa, *spiffe;
    struct map pods;   /* pod key -> struct m_pod */
    struct map outset; /* svc key -> struct m_svc */
    json_t *outbound;  /* compiled array, NULL when stale */
    struct chash out_hash;
    bool fresh; /* outset to be computed by the next resolve */
};

struct m_nsc {
    char *name;
    json_t *labels; /* NULL when the Namespace object is unknown */
    struct map pods, svcs, slices, sas, splits, aps, rps, rgs, idents;
    struct map podrefs; /* pod name -> struct map (service name -> slice reference count) */
};

struct mesh_model {
    char *trust_domain, *bundle_cm, *bundle_key;
    enum mesh_mode mode;
    enum mesh_outbound_scope scope;
    struct map nss;    /* name -> struct m_nsc */
    struct map pods;   /* ns/name -> struct m_pod */
    struct map svcs;   /* ns/name -> struct m_svc */
    struct map idents; /* ns/sa -> struct m_ident */
    /* reach indexes: which services an identity may call, by caller rule */
    struct map reach_all;  /* svc key -> svc: anyone */
    struct map reach_scan; /* svc key -> svc: rules that need evaluation (selectors, IDs) */
    struct map reach_ns;   /* ns -> struct map of svc */
    struct map reach_sa;   /* ns/sa -> struct map of svc */
    /* pending work */
    struct map d_pods;   /* pod keys whose document may have changed */
    struct map d_blocks; /* svc keys whose outbound block must be recompiled */
    struct map d_reach;  /* svc keys whose meshed flag / caller rule must be recomputed */
    bool pending;        /* something above (or a fresh identity) awaits resolve */
    size_t counts[MK__COUNT];
    uint64_t compile_failures; /* mesh_compile_pod_ex calls that failed (not ERR_NOTFOUND) */
};

/* Split keys inside a namespace: "w/<name>" (mesh.weft.dev) and "s/<name>" (SMI). */
struct m_nsc *controller__nsc(struct mesh_model *m, const char *ns, bool create);
struct m_cr *controller__split_get(struct m_nsc *c, bool smi, const char *name);
char *controller__key(const char *a, const char *b); /* "a/b", NULL on -ENOMEM */
char *controller__spiffe(const struct mesh_model *m, const char *ns, const char *sa);
void controller__mark(struct map *set, const char *key, struct mesh_model *m);

/* "Pod", "TrafficSplit.split.smi-spec.io", ... to a kind; ERR_UNSUPPORTED otherwise. */
int controller__kind_of_name(const char *kind, enum mk *out);
/* Does AccessPolicy ap target the pod (labels in its namespace)? */
bool controller__ap_targets_pod(struct mesh_model *m, const struct m_cr *ap, const struct m_pod *p);
/* Does a from-entry (normalized) match identity ns/sa? */
bool controller__from_match(struct mesh_model *m, const json_t *entry, const char *ns,
                            const char *sa, const char *spiffe);

#endif
