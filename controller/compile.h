/*
 * compile.h - compiler internals (include controller_int.h).
 */
#ifndef WEFT_CONTROLLER_COMPILE_H
#define WEFT_CONTROLLER_COMPILE_H

/*
 * Per-server weights for one route. Backend b asks for share W[b] / sum(W) and has n[b] ready
 * endpoints. Writes w[b] in 0..256 (0 exactly when W[b] is 0 or n[b] is 0) such that
 * n[b]*w[b] / sum(n*w) is as close as possible to the requested share among backends with
 * endpoints (smallest total absolute error over all scalings whose largest weight is 1..256;
 * ties go to the smaller scale). achieved_ppm[b] gets the resulting share in parts per
 * million (rounded). nb <= 64. Returns 0 or -EINVAL (negative input, nb out of range).
 */
int controller__weights(size_t nb, const long long *W, const long long *n, int *w,
                        long long *achieved_ppm);

/* Bring derived state up to date (reach, outbound sets, dirty blocks). Returns 0, -ENOMEM. */
int controller__resolve(struct mesh_model *m);
/* Drop a service's links to identities (before it is freed or when it stops being meshed). */
void controller__svc_unlink(struct mesh_model *m, struct m_svc *s);
/* Drop an identity's links to services (before it is freed). */
void controller__ident_unlink(struct mesh_model *m, struct m_ident *id);

/* Split winner for an apex service (port 0: any): the accepted split covering that port, or
 * NULL. Also used by status. */
const struct m_cr *controller__split_for(struct mesh_model *m, const char *ns, const char *apex,
                                         int port);

#endif
