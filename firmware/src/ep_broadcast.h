/* edgepack runtime, private: 4-D broadcast shape check for ADD and MUL. */
#ifndef EP_BROADCAST_H
#define EP_BROADCAST_H
#include "ep_internal.h"

static inline int ep_bcast_dim_ok(int32_t in, int32_t out) { return in == out || in == 1; }

static inline ep_status ep_broadcast_check(const ep_shape *a, const ep_shape *b, const ep_shape *o)
{
    if (ep_shape_count(a) < 0 || ep_shape_count(b) < 0 || ep_shape_count(o) < 0) return EP_ERR_DIM;
    if (!ep_bcast_dim_ok(a->n, o->n) || !ep_bcast_dim_ok(a->h, o->h) || !ep_bcast_dim_ok(a->w, o->w) ||
        !ep_bcast_dim_ok(a->c, o->c))
        return EP_ERR_DIM;
    if (!ep_bcast_dim_ok(b->n, o->n) || !ep_bcast_dim_ok(b->h, o->h) || !ep_bcast_dim_ok(b->w, o->w) ||
        !ep_bcast_dim_ok(b->c, o->c))
        return EP_ERR_DIM;
    return EP_OK;
}

/* Offset of output coordinate (n,h,w,c) in a broadcast input of shape s. */
static inline int64_t ep_bcast_offset(const ep_shape *s, int32_t n, int32_t h, int32_t w, int32_t c)
{
    return (((int64_t)(s->n == 1 ? 0 : n) * s->h + (s->h == 1 ? 0 : h)) * s->w + (s->w == 1 ? 0 : w)) * s->c +
           (s->c == 1 ? 0 : c);
}
#endif
