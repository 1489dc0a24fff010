/* The report's plot engine: inline SVG, no scripts, no network.
 *
 * What a reader of a paper expects of a figure: ticks at round values (1, 2,
 * 5 × 10^k, on log axes too: 1 kB, 2 kB, 5 kB or 100%, 50%, 20%), tick
 * labels in the axis's unit (percent, bytes, ×), markers that are means
 * with ±1 standard deviation bars and say over how many seeds, a legend that
 * lists every series (it grows below the plot instead of clipping at the
 * twelfth), and distinct marker shapes once the ten colours repeat. */
#include "report/report_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pt {
    int    series;
    char  *group, *tip;
    const cJSON *ref;
    double n, sx, sy, syy;
} pt;
typedef struct ser { char *name; unsigned style; int ci; } ser;   /* ci: colour and shape index */
typedef struct seg { double x1, y1, x2, y2; } seg;

struct plot {
    char    *title, *caption, *xlabel, *ylabel;
    axis     x, y;
    unsigned flags;
    ser     *s;
    int      ns, scap;
    pt      *p;
    int      np, pcap;
    int     *hash;     /* open addressing: index + 1 into p, 0 empty */
    size_t   hcap;
    seg     *l;
    int      nl, lcap;
    int      oom;
};

static char *dup_or_null(const char *s) { return s ? rf_strdup(s) : NULL; }

plot *plot_new(const char *title, const char *caption, axis x, axis y, unsigned flags) {
    plot *p = rf_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->title = dup_or_null(title);
    p->caption = dup_or_null(caption);
    p->xlabel = dup_or_null(x.label);
    p->ylabel = dup_or_null(y.label);
    p->x = x;
    p->y = y;
    p->x.label = p->xlabel;
    p->y.label = p->ylabel;
    p->flags = flags;
    if ((title && !p->title) || (caption && !p->caption) || (x.label && !p->xlabel) || (y.label && !p->ylabel)) {
        plot_free(p);
        return NULL;
    }
    return p;
}

void plot_free(plot *p) {
    if (!p) return;
    for (int i = 0; i < p->ns; i++) rf_free(p->s[i].name);
    for (int i = 0; i < p->np; i++) { rf_free(p->p[i].group); rf_free(p->p[i].tip); }
    rf_free(p->s); rf_free(p->p); rf_free(p->hash); rf_free(p->l);
    rf_free(p->title); rf_free(p->caption); rf_free(p->xlabel); rf_free(p->ylabel);
    rf_free(p);
}

int plot_series(plot *p, const char *name, unsigned style) { return plot_series_like(p, name, style, -1); }

int plot_series_like(plot *p, const char *name, unsigned style, int like) {
    for (int i = 0; i < p->ns; i++) if (strcmp(p->s[i].name, name) == 0) return i;
    if (!rep_grow((void **)&p->s, &p->scap, p->ns, sizeof *p->s)) { p->oom = 1; return -1; }
    char *n = rf_strdup(name);
    if (!n) { p->oom = 1; return -1; }
    /* reference series are grey and take no colour from the others */
    int ci = 0;
    for (int i = 0; i < p->ns; i++) if (!(p->s[i].style & ST_REF) && p->s[i].ci + 1 > ci) ci = p->s[i].ci + 1;
    if (like >= 0 && like < p->ns) ci = p->s[like].ci;
    p->s[p->ns] = (ser){n, style, ci};
    return p->ns++;
}

static uint64_t hash_key(int series, const char *g) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(unsigned)series;
    for (; *g; g++) h = (h ^ (unsigned char)*g) * 1099511628211ull;
    return h;
}

static int rehash(plot *p, size_t cap) {
    int *h = rf_calloc(cap, sizeof *h);
    if (!h) return 0;
    for (int i = 0; i < p->np; i++) {
        size_t k = hash_key(p->p[i].series, p->p[i].group) & (cap - 1);
        while (h[k]) k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    rf_free(p->hash);
    p->hash = h;
    p->hcap = cap;
    return 1;
}

void plot_add(plot *p, int series, const char *group, double x, double y, const cJSON *ref, const char *tip) {
    if (series < 0 || series >= p->ns || !isfinite(x) || !isfinite(y) || p->oom) return;
    if ((size_t)(p->np + 1) * 2 > p->hcap && !rehash(p, p->hcap ? p->hcap * 2 : 64)) { p->oom = 1; return; }
    size_t k = hash_key(series, group) & (p->hcap - 1);
    for (; p->hash[k]; k = (k + 1) & (p->hcap - 1)) {
        pt *q = &p->p[p->hash[k] - 1];
        if (q->series == series && strcmp(q->group, group) == 0) {
            q->n++; q->sx += x; q->sy += y; q->syy += y * y;
            return;
        }
    }
    if (!rep_grow((void **)&p->p, &p->pcap, p->np, sizeof *p->p)) { p->oom = 1; return; }
    pt *q = &p->p[p->np];
    *q = (pt){series, rf_strdup(group), dup_or_null(tip ? tip : group), ref, 1, x, y, y * y};
    if (!q->group || !q->tip) { rf_free(q->group); rf_free(q->tip); p->oom = 1; return; }
    p->hash[k] = ++p->np;
}

void plot_link(plot *p, double x1, double y1, double x2, double y2) {
    if (!isfinite(x1) || !isfinite(y1) || !isfinite(x2) || !isfinite(y2) || p->oom) return;
    if (!rep_grow((void **)&p->l, &p->lcap, p->nl, sizeof *p->l)) { p->oom = 1; return; }
    p->l[p->nl++] = (seg){x1, y1, x2, y2};
}

static double mx(const pt *q) { return q->sx / q->n; }
static double my(const pt *q) { return q->sy / q->n; }
static double sd(const pt *q) {
    if (q->n < 2) return 0;
    double v = (q->syy - q->sy * q->sy / q->n) / (q->n - 1);
    return v > 0 ? sqrt(v) : 0;
}

/* ---- ticks -------------------------------------------------------------------- */

typedef struct ticks { double v[64]; int n; double lo, hi; } ticks;

/* 1, 2 or 5 × 10^k near range / target */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void ticks_linear(double lo, double hi, ticks *t) {
    if (!(hi > lo)) {
        double d = lo != 0 ? fabs(lo) * 0.05 : 0.05;
        lo -= d;
        hi += d;
    }
    double step = nice_step(hi - lo, 5);
    double a = floor(lo / step + 1e-9), b = ceil(hi / step - 1e-9);
    t->lo = a * step;
    t->hi = b * step;
    t->n = 0;
    for (double k = a; k <= b + 1e-9 && t->n < 64; k++) t->v[t->n++] = k * step;
}

/* Log axis: the 1-2-5 sequence around the data; decades only when that
 * gives more than 10 ticks, every other decade past 10 decades. */
static void ticks_log(double lo, double hi, ticks *t) {
    if (!(hi > lo)) { lo /= 1.5; hi *= 1.5; }
    static const double m[] = {1, 2, 5};
    int e0 = (int)floor(log10(lo)) - 1, e1 = (int)ceil(log10(hi)) + 1;
    double c[200];
    int nc = 0;
    for (int e = e0; e <= e1 && nc < 197; e++)
        for (int k = 0; k < 3; k++) c[nc++] = m[k] * pow(10, e);
    int a = 0, b = nc - 1;
    while (a + 1 < nc && c[a + 1] <= lo * (1 + 1e-9)) a++;
    while (b - 1 >= 0 && c[b - 1] >= hi * (1 - 1e-9)) b--;
    t->n = 0;
    if (b - a + 1 <= 10) {
        t->lo = c[a];
        t->hi = c[b];
        for (int k = a; k <= b; k++) t->v[t->n++] = c[k];
        return;
    }
    int d0 = (int)floor(log10(lo) + 1e-9), d1 = (int)ceil(log10(hi) - 1e-9);
    int every = d1 - d0 > 10 ? 2 : 1;
    t->lo = pow(10, d0);
    t->hi = pow(10, d1);
    for (int e = d0; e <= d1 && t->n < 64; e += every) t->v[t->n++] = pow(10, e);
}

/* A value in the axis's unit; digits: significant digits for tooltips, 0
 * for a tick label (then the tick step decides). */
static void fmt_value(char *b, size_t n, const axis *a, double v, double step, int tooltip) {
    int dec = 0;
    if (!tooltip && step > 0 && !a->log) {
        double s = a->unit == AX_PERCENT ? step * 100 : step;
        dec = s < 1 ? (int)ceil(-log10(s) - 1e-9) : 0;
    }
    switch (a->unit) {
    case AX_PERCENT:
        if (tooltip) snprintf(b, n, "%.2f%%", v * 100);
        else if (a->log) snprintf(b, n, "%g%%", v * 100);
        else snprintf(b, n, "%.*f%%", dec, v * 100);
        return;
    case AX_BYTES: {
        static const char *const u[] = {"B", "kB", "MB", "GB", "TB"};
        int k = 0;
        while (k < 4 && fabs(v) >= 1000) { v /= 1000; k++; }
        snprintf(b, n, tooltip ? "%.4g %s" : "%g %s", v, u[k]);
        return;
    }
    case AX_RATIO: snprintf(b, n, tooltip ? "%.3g×" : "%g×", v); return;
    case AX_CATEGORY: {
        int i = (int)lround(v);
        snprintf(b, n, "%s", i >= 0 && i < a->ncats ? a->cats[i] : "?");
        return;
    }
    case AX_PLAIN:
        if (tooltip) snprintf(b, n, "%.4g", v);
        else if (a->log) snprintf(b, n, "%g", v);
        else snprintf(b, n, "%.*f", dec, v);
        return;
    }
}

/* ---- markers ------------------------------------------------------------------ */

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

static const char *colour(const plot *p, int i) { return (p->s[i].style & ST_REF) ? "#333333" : palette[p->s[i].ci % 10]; }
static int shape(const plot *p, int i) { return (p->s[i].style & ST_REF) ? 1 : (p->s[i].ci / 10) % 4; }

static void marker(rf_buf *b, int shp, double x, double y, const char *col, int hollow, double r) {
    const char *fill = hollow ? "#fff" : col;
    switch (shp) {
    case 0: rf_buf_printf(b, "<circle cx='%.1f' cy='%.1f' r='%.1f' fill='%s' stroke='%s' stroke-width='1.5'>", x, y, r, fill, col); return;
    case 1: rf_buf_printf(b, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' stroke='%s' stroke-width='1.5'>", x - r, y - r,
                          2 * r, 2 * r, fill, col); return;
    case 2: rf_buf_printf(b, "<path d='M%.1f %.1fL%.1f %.1fL%.1f %.1fZ' fill='%s' stroke='%s' stroke-width='1.5'>", x, y - r * 1.2,
                          x + r * 1.1, y + r * 0.8, x - r * 1.1, y + r * 0.8, fill, col); return;
    default: rf_buf_printf(b, "<path d='M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ' fill='%s' stroke='%s' stroke-width='1.5'>", x,
                           y - r * 1.3, x + r * 1.1, y, x, y + r * 1.3, x - r * 1.1, y, fill, col); return;
    }
}
static const char *const marker_end[] = {"</circle>", "</rect>", "</path>", "</path>"};

static const char *dash(const plot *p, int i) {
    if (p->s[i].style & ST_DASHED) return " stroke-dasharray='6 4'";
    return (p->s[i].ci / 10) % 2 ? " stroke-dasharray='2 3'" : "";
}

/* ---- rendering ------------------------------------------------------------------ */

typedef struct frame {
    double W, L, T, pw, ph;
    ticks  tx, ty;
} frame;

/* Axis position in [0, 1] with a 3% margin each side, so a marker on the
 * first or last tick is drawn whole. */
static double axis_u(const ticks *t, const axis *a, double v) {
    double lo = a->log ? log10(t->lo) : t->lo, hi = a->log ? log10(t->hi) : t->hi;
    double u = ((a->log ? log10(v) : v) - lo) / (hi - lo);
    return 0.03 + 0.94 * u;
}
static double px(const frame *f, const axis *a, double v) {
    double u = axis_u(&f->tx, a, v);
    return f->L + (a->rev ? 1 - u : u) * f->pw;
}
static double py(const frame *f, const axis *a, double v) { return f->T + f->ph - axis_u(&f->ty, a, v) * f->ph; }

/* A marker a log x axis can show (a log y axis draws zeros as crosses). */
static int visible(const plot *p, const pt *q) { return !(p->x.log && mx(q) <= 0); }

/* Frontier over the markers: by x ascending (ties: higher y first), each
 * one higher than every marker left of it. Returns the count; idx out. */
typedef struct xyi { double x, y; int i; } xyi;
static int xyi_cmp(const void *a, const void *b) {
    const xyi *u = a, *v = b;
    if (u->x != v->x) return u->x < v->x ? -1 : 1;
    return u->y > v->y ? -1 : u->y < v->y;
}
static int frontier_idx(const plot *p, int *idx) {
    xyi *v = rf_malloc((size_t)(p->np ? p->np : 1) * sizeof *v);
    if (!v) return 0;
    int n = 0;
    for (int i = 0; i < p->np; i++)
        if (visible(p, &p->p[i]) && !(p->s[p->p[i].series].style & ST_REF)) v[n++] = (xyi){mx(&p->p[i]), my(&p->p[i]), i};
    qsort(v, (size_t)n, sizeof *v, xyi_cmp);
    int m = 0;
    double best = -INFINITY;
    for (int k = 0; k < n; k++)
        if (v[k].y > best) { idx[m++] = v[k].i; best = v[k].y; }
    rf_free(v);
    return m;
}

/* Marker indices of series si sorted by mean x. */
static int series_points(const plot *p, int si, int *out) {
    xyi *v = rf_malloc((size_t)(p->np ? p->np : 1) * sizeof *v);
    if (!v) return 0;
    int n = 0;
    for (int i = 0; i < p->np; i++)
        if (p->p[i].series == si) v[n++] = (xyi){mx(&p->p[i]), my(&p->p[i]), i};
    qsort(v, (size_t)n, sizeof *v, xyi_cmp);
    for (int k = 0; k < n; k++) out[k] = v[k].i;
    rf_free(v);
    return n;
}

int plot_frontier(const plot *p, const cJSON **out, int max) {
    int *idx = rf_malloc((size_t)(p->np ? p->np : 1) * sizeof *idx);
    if (!idx) return 0;
    int m = frontier_idx(p, idx), k = 0;
    for (; k < m && k < max; k++) out[k] = p->p[idx[k]].ref;
    rf_free(idx);
    return k;
}

/* The "n" part of a series' legend entry: "n = 3" when every marker
 * averages 3 tasks, "n = 1–3" when they differ. */
static void series_n(const plot *p, int si, char *b, size_t n) {
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < p->np; i++)
        if (p->p[i].series == si) { lo = fmin(lo, p->p[i].n); hi = fmax(hi, p->p[i].n); }
    b[0] = '\0';
    if (!(p->flags & PL_AGG) || !isfinite(lo)) return;
    if (lo == hi) snprintf(b, n, " (n = %.0f)", lo);
    else snprintf(b, n, " (n = %.0f–%.0f)", lo, hi);
}

static void tooltip(rf_buf *b, const plot *p, const pt *q) {
    char xs[64], ys[64];
    fmt_value(xs, sizeof xs, &p->x, mx(q), 0, 1);
    fmt_value(ys, sizeof ys, &p->y, my(q), 0, 1);
    rf_buf_printf(b, "<title>");
    rep_html(b, q->n > 1 ? q->group : q->tip);
    rf_buf_printf(b, "\n%s: %s\n%s: %s", p->x.label ? p->x.label : "x", xs, p->y.label ? p->y.label : "y", ys);
    if (q->n > 1) {
        char s[64];
        fmt_value(s, sizeof s, &p->y, sd(q), 0, 1);
        rf_buf_printf(b, " ± %s (mean ± std over %.0f seeds)", s, q->n);
    }
    rf_buf_printf(b, "</title>");
}

/* Where the axes of a plot without data would be: an empty frame and a word. */
static void render_empty(rf_buf *b, const plot *p) {
    rf_buf_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='600' height='120' viewBox='0 0 600 120' role='img'>"
                     "<rect x='74' y='10' width='500' height='90' fill='none' stroke='#ccc'/>"
                     "<text x='324' y='60' font-size='13' fill='#888' text-anchor='middle'>no finished tasks for this plot yet</text></svg>");
    (void)p;
}

/* Length of "experiment/" when every series name starts with the same
 * first component (one experiment: the legend need not repeat it), else 0. */
static size_t common_head(const plot *p) {
    if (p->ns == 0) return 0;
    const char *slash = strchr(p->s[0].name, '/');
    if (!slash) return 0;
    size_t n = (size_t)(slash - p->s[0].name) + 1;
    for (int i = 0; i < p->ns; i++)
        if (strlen(p->s[i].name) <= n || strncmp(p->s[i].name, p->s[0].name, n) != 0) return 0;
    return n;
}

void plot_render(rf_buf *b, const plot *p, const char *extra_html) {
    rf_buf_printf(b, "<figure><h3>");
    rep_html(b, p->title ? p->title : "");
    rf_buf_printf(b, "</h3>");
    int *idx = rf_malloc((size_t)(p->np ? p->np : 1) * sizeof *idx);
    if (!idx || p->oom) {
        rf_buf_printf(b, "<p class='err'>out of memory drawing this plot</p></figure>\n");
        rf_free(idx);
        return;
    }
    /* the data range of what can be drawn */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int any = 0, hidden = 0, collapsed = 0;
    for (int i = 0; i < p->np; i++) {
        const pt *q = &p->p[i];
        if (!visible(p, q)) { hidden++; continue; }
        double x = mx(q), y = my(q), s = sd(q);
        any = 1;
        x0 = fmin(x0, x); x1 = fmax(x1, x);
        if (p->y.log && y <= 0) { collapsed++; continue; }
        y0 = fmin(y0, p->y.log ? y : y - s);
        y1 = fmax(y1, p->y.log ? y : y + s);
    }
    for (int i = 0; i < p->nl; i++) {
        const seg *l = &p->l[i];
        if (!p->x.log || (l->x1 > 0 && l->x2 > 0)) { x0 = fmin(x0, fmin(l->x1, l->x2)); x1 = fmax(x1, fmax(l->x1, l->x2)); }
        y0 = fmin(y0, fmin(l->y1, l->y2));
        y1 = fmax(y1, fmax(l->y1, l->y2));
    }
    if (!any) {
        render_empty(b, p);
        rf_free(idx);
        rf_buf_printf(b, "%s</figure>\n", extra_html ? extra_html : "");
        return;
    }
    if (!isfinite(y0)) { y0 = 1e-3; y1 = 1; }   /* a log y axis with only zeros */
    frame f = {.W = 600, .L = 74, .T = 12, .pw = 500, .ph = 250};
    if (p->x.unit == AX_CATEGORY) {
        f.tx.lo = -0.5; f.tx.hi = p->x.ncats - 0.5; f.tx.n = 0;
        int every = p->x.ncats > 24 ? (p->x.ncats + 23) / 24 : 1;
        for (int k = 0; k < p->x.ncats && f.tx.n < 64; k += every) f.tx.v[f.tx.n++] = k;
    } else if (p->x.log) ticks_log(x0, x1, &f.tx);
    else ticks_linear(x0, x1, &f.tx);
    if (p->y.log) ticks_log(y0, y1, &f.ty);
    else ticks_linear(y0, y1, &f.ty);
    /* the x axis band: rotated category names need more room */
    double xb = 46;
    if (p->x.unit == AX_CATEGORY) {
        size_t ml = 0;
        for (int k = 0; k < p->x.ncats; k++) if (strlen(p->x.cats[k]) > ml) ml = strlen(p->x.cats[k]);
        xb = 34 + fmin(4.5 * (double)ml, 110);
    }
    /* the legend below: columns as wide as the longest entry */
    char nb[48];
    double ew = 0;
    size_t head = common_head(p);
    for (int i = 0; i < p->ns; i++) {
        series_n(p, i, nb, sizeof nb);
        double w = 6.6 * (double)(strlen(p->s[i].name + head) + strlen(nb)) + 34;
        if (w > ew) ew = w;
    }
    int pareto = (p->flags & PL_PARETO) != 0;
    int entries = p->ns + pareto + (collapsed > 0);
    double avail = f.W - f.L;
    if (ew > avail) f.W = f.L + ew;   /* a long name widens the figure rather than being cut */
    int cols = ew > 0 ? (int)((f.W - f.L) / ew) : 1;
    if (cols < 1) cols = 1;
    int rows = (entries + cols - 1) / cols;
    double ly = f.T + f.ph + xb, H = ly + rows * 18 + 10;
    rf_buf_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f' role='img' "
                     "font-family='sans-serif'>", f.W, H, f.W, H);
    rf_buf_printf(b, "<rect width='100%%' height='100%%' fill='#fff'/>");
    /* grid and ticks */
    char lab[96];
    for (int k = 0; k < f.ty.n; k++) {
        double yp = py(&f, &p->y, f.ty.v[k]);
        fmt_value(lab, sizeof lab, &p->y, f.ty.v[k], f.ty.n > 1 ? f.ty.v[1] - f.ty.v[0] : 0, 0);
        rf_buf_printf(b, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#e6e6e6'/>"
                         "<text x='%.0f' y='%.1f' font-size='11' text-anchor='end'>%s</text>",
                      f.L, f.L + f.pw, yp, yp, f.L - 5, yp + 4, lab);
    }
    for (int k = 0; k < f.tx.n; k++) {
        double xp = px(&f, &p->x, f.tx.v[k]);
        fmt_value(lab, sizeof lab, &p->x, f.tx.v[k], f.tx.n > 1 ? f.tx.v[1] - f.tx.v[0] : 0, 0);
        rf_buf_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.0f' y2='%.0f' stroke='#e6e6e6'/>", xp, xp, f.T, f.T + f.ph);
        if (p->x.unit == AX_CATEGORY) {
            rf_buf_printf(b, "<text x='%.1f' y='%.0f' font-size='10' text-anchor='end' transform='rotate(-40 %.1f %.0f)'>", xp,
                          f.T + f.ph + 14, xp, f.T + f.ph + 14);
            rep_html(b, lab);
            rf_buf_printf(b, "</text>");
        } else
            rf_buf_printf(b, "<text x='%.1f' y='%.0f' font-size='11' text-anchor='middle'>%s</text>", xp, f.T + f.ph + 16, lab);
    }
    rf_buf_printf(b, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#888'/>", f.L, f.T, f.pw, f.ph);
    rf_buf_printf(b, "<text x='%.0f' y='%.0f' font-size='12' text-anchor='middle'>", f.L + f.pw / 2, f.T + f.ph + xb - 8);
    rep_html(b, p->x.label ? p->x.label : "");
    rf_buf_printf(b, "</text><text x='16' y='%.0f' font-size='12' text-anchor='middle' transform='rotate(-90 16 %.0f)'>",
                  f.T + f.ph / 2, f.T + f.ph / 2);
    rep_html(b, p->y.label ? p->y.label : "");
    rf_buf_printf(b, "</text>");
    /* links (quantized -> float parent) */
    for (int i = 0; i < p->nl; i++) {
        const seg *l = &p->l[i];
        if (p->x.log && (l->x1 <= 0 || l->x2 <= 0)) continue;
        rf_buf_printf(b, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#999' stroke-width='1'/>", px(&f, &p->x, l->x1),
                      py(&f, &p->y, l->y1), px(&f, &p->x, l->x2), py(&f, &p->y, l->y2));
    }
    double ybot = f.T + f.ph;
    /* reference levels across the plot */
    for (int i = 0; i < p->np; i++) {
        const pt *q = &p->p[i];
        if (!(p->s[q->series].style & ST_HLINE) || (p->y.log && my(q) <= 0)) continue;
        double yp = py(&f, &p->y, my(q));
        rf_buf_printf(b, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='1' stroke-dasharray='3 3'/>", f.L,
                      f.L + f.pw, yp, yp, colour(p, q->series));
    }
    /* series: line, error bars, markers */
    for (int si = 0; si < p->ns; si++) {
        const char *col = colour(p, si);
        int n = series_points(p, si, idx);
        if ((p->flags & PL_LINES) && !(p->s[si].style & ST_NOLINE) && n > 1) {
            rf_buf_printf(b, "<polyline fill='none' stroke='%s' stroke-width='1.8'%s points='", col, dash(p, si));
            for (int k = 0; k < n; k++) {
                const pt *q = &p->p[idx[k]];
                if (!visible(p, q)) continue;
                double y = my(q);
                rf_buf_printf(b, "%.1f,%.1f ", px(&f, &p->x, mx(q)), p->y.log && y <= 0 ? ybot : py(&f, &p->y, y));
            }
            rf_buf_printf(b, "'/>");
        }
        for (int k = 0; k < n; k++) {
            const pt *q = &p->p[idx[k]];
            if (!visible(p, q)) continue;
            double xp = px(&f, &p->x, mx(q)), y = my(q), s = sd(q);
            if (p->y.log && y <= 0) {
                /* a layer with nothing left: a cross on the bottom edge */
                rf_buf_printf(b, "<path d='M%.1f %.1fl8 8m0 -8l-8 8' stroke='%s' stroke-width='2'>", xp - 4, ybot - 4, col);
                tooltip(b, p, q);
                rf_buf_printf(b, "</path>");
                continue;
            }
            double yp = py(&f, &p->y, y);
            if (s > 0 && !p->y.log) {
                double a = py(&f, &p->y, y - s), c = py(&f, &p->y, y + s);
                rf_buf_printf(b, "<path d='M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8' stroke='%s' stroke-width='1.3' fill='none'/>", xp, a, c,
                              xp - 4, a, xp - 4, c, col);
            }
            marker(b, shape(p, si), xp, yp, col, (p->s[si].style & ST_HOLLOW) != 0, 3.6);
            tooltip(b, p, q);
            rf_buf_printf(b, "%s", marker_end[shape(p, si)]);
        }
    }
    /* the frontier as a staircase: the best accuracy at this size or smaller */
    if (pareto) {
        int m = frontier_idx(p, idx);
        if (m > 0) {
            rf_buf_printf(b, "<polyline fill='none' stroke='#000' stroke-width='1.4' stroke-dasharray='5 3' points='");
            for (int k = 0; k < m; k++) {
                const pt *q = &p->p[idx[k]];
                double xp = px(&f, &p->x, mx(q)), yp = py(&f, &p->y, my(q));
                if (k) rf_buf_printf(b, "%.1f,%.1f ", xp, py(&f, &p->y, my(&p->p[idx[k - 1]])));
                rf_buf_printf(b, "%.1f,%.1f ", xp, yp);
            }
            rf_buf_printf(b, "'/>");
            for (int k = 0; k < m; k++) {
                const pt *q = &p->p[idx[k]];
                rf_buf_printf(b, "<circle cx='%.1f' cy='%.1f' r='7' fill='none' stroke='#000' stroke-width='1'/>", px(&f, &p->x, mx(q)),
                              py(&f, &p->y, my(q)));
            }
        }
    }
    /* legend */
    for (int e = 0; e < entries; e++) {
        double ex = f.L + (e % cols) * ew, ey = ly + (e / cols) * 18 + 6;
        if (e < p->ns) {
            const char *col = colour(p, e);
            rf_buf_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='1.8'%s/>", ex, ex + 22, ey, ey, col,
                          (p->flags & PL_LINES) && !(p->s[e].style & ST_NOLINE) ? dash(p, e) : " stroke-opacity='0'");
            marker(b, shape(p, e), ex + 11, ey, col, (p->s[e].style & ST_HOLLOW) != 0, 3.6);
            rf_buf_printf(b, "%s<text x='%.1f' y='%.1f' font-size='12'>", marker_end[shape(p, e)], ex + 28, ey + 4);
            rep_html(b, p->s[e].name + head);
            series_n(p, e, nb, sizeof nb);
            rep_html(b, nb);
            rf_buf_printf(b, "</text>");
        } else if (pareto && e == p->ns) {
            rf_buf_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#000' stroke-dasharray='5 3'/>"
                             "<circle cx='%.1f' cy='%.1f' r='6' fill='none' stroke='#000'/><text x='%.1f' y='%.1f' font-size='12'>"
                             "Pareto frontier (circled)</text>", ex, ex + 22, ey, ey, ex + 11, ey, ex + 28, ey + 4);
        } else {
            rf_buf_printf(b, "<path d='M%.1f %.1fl8 8m0 -8l-8 8' stroke='#333' stroke-width='2'/><text x='%.1f' y='%.1f' font-size='12'>"
                             "nothing left (collapsed)</text>", ex + 7, ey - 4, ex + 28, ey + 4);
        }
    }
    rf_buf_printf(b, "</svg>");
    if (p->caption || hidden || head) {
        rf_buf_printf(b, "<figcaption>");
        if (head) {
            char ex[256];
            snprintf(ex, sizeof ex, "%.*s", (int)head - 1, p->s[0].name);
            rf_buf_printf(b, "Experiment <b>");
            rep_html(b, ex);
            rf_buf_printf(b, "</b>. ");
        }
        if (p->caption) rep_html(b, p->caption);
        if (hidden) rf_buf_printf(b, " %d point(s) with a non-positive x are not on this log axis.", hidden);
        rf_buf_printf(b, "</figcaption>");
    }
    rf_buf_printf(b, "%s</figure>\n", extra_html ? extra_html : "");
    rf_free(idx);
}
