/* Tensors and the activation arena. */
#include "raffle/core.h"

#include <string.h>

static const struct { const char *name; size_t size; } dtypes[RF_DTYPE_COUNT_] = {
    [RF_F32] = {"f32", 4}, [RF_I8] = {"i8", 1}, [RF_U8] = {"u8", 1},
    [RF_I32] = {"i32", 4}, [RF_I64] = {"i64", 8},
};

size_t rf_dtype_size(rf_dtype t) { return (unsigned)t < RF_DTYPE_COUNT_ ? dtypes[t].size : 0; }
const char *rf_dtype_name(rf_dtype t) { return (unsigned)t < RF_DTYPE_COUNT_ ? dtypes[t].name : "?"; }
int rf_dtype_from_name(const char *s) {
    for (int i = 0; i < RF_DTYPE_COUNT_; i++)
        if (strcmp(s, dtypes[i].name) == 0) return i;
    return -1;
}

int64_t rf_shape_numel(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > RF_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

int64_t rf_tensor_numel(const rf_tensor *t) { return rf_shape_numel(t->ndim, t->shape); }

static rf_status fill_header(rf_ctx *ctx, rf_tensor *t, rf_dtype dt, int ndim, const int64_t *shape) {
    if ((unsigned)dt >= RF_DTYPE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "tensor: invalid dtype %d", (int)dt);
    if (ndim < 0 || ndim > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_INVALID, "tensor: %d dims (max %d)", ndim, RF_MAX_DIMS);
    if (rf_shape_numel(ndim, shape) < 0) return rf_error(ctx, RF_ERR_INVALID, "tensor: invalid shape");
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) { t->shape[i] = shape[i]; t->stride[i] = s; s *= shape[i]; }
    return RF_OK;
}

rf_status rf_tensor_new(rf_ctx *ctx, rf_dtype dt, int ndim, const int64_t *shape, rf_tensor **out) {
    *out = NULL;
    rf_tensor tmp;
    RF_TRY(fill_header(ctx, &tmp, dt, ndim, shape));
    int64_t n = rf_tensor_numel(&tmp);
    if ((uint64_t)n > UINT64_MAX / rf_dtype_size(dt)) return rf_error(ctx, RF_ERR_LIMIT, "tensor: size overflows");
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * rf_dtype_size(dt), "tensor"));
    rf_tensor *t = rf_malloc(sizeof *t);
    if (!t) return rf_error(ctx, RF_ERR_NOMEM, "tensor: out of memory");
    *t = tmp;
    t->data = rf_aligned_alloc(64, (size_t)n * rf_dtype_size(dt));
    if (!t->data) { rf_free(t); return rf_error(ctx, RF_ERR_NOMEM, "tensor: out of memory"); }
    memset(t->data, 0, (size_t)n * rf_dtype_size(dt));
    t->owns = 1;
    *out = t;
    return RF_OK;
}

rf_status rf_tensor_view(rf_ctx *ctx, rf_tensor *out, rf_dtype dt, int ndim, const int64_t *shape, void *data) {
    RF_TRY(fill_header(ctx, out, dt, ndim, shape));
    out->data = data;
    out->owns = 0;
    return RF_OK;
}

void rf_tensor_free(rf_tensor *t) {
    if (!t) return;
    if (t->owns) rf_free(t->data);
    rf_free(t);
}

rf_status rf_arena_init(rf_ctx *ctx, rf_arena *a, size_t cap) {
    memset(a, 0, sizeof *a);
    RF_TRY(rf_check_cap(ctx, cap, "arena"));
    a->base = rf_aligned_alloc(64, cap);
    if (!a->base) return rf_error(ctx, RF_ERR_NOMEM, "arena: cannot allocate %zu bytes", cap);
    a->cap = cap;
    return RF_OK;
}

void *rf_arena_alloc(rf_ctx *ctx, rf_arena *a, size_t bytes) {
    size_t start = (a->used + 63) & ~(size_t)63;
    if (start > a->cap || bytes > a->cap - start) {
        rf_error(ctx, RF_ERR_NOMEM, "arena: %zu bytes requested, %zu of %zu used", bytes, a->used, a->cap);
        return NULL;
    }
    a->used = start + bytes;
    return a->base + start;
}

void rf_arena_reset(rf_arena *a) { a->used = 0; }

void rf_arena_free(rf_arena *a) {
    if (!a) return;
    rf_free(a->base);
    memset(a, 0, sizeof *a);
}
