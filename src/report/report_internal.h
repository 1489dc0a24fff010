/* src/report internals: the rows (report.c), the SVG plot engine (svg.c),
 * the study's plots (plots.c) and the page (html.c). Everything here reads
 * the report object (raffle/report.h), so `raffle report` on a store and
 * rf_report_html on a saved report.json draw the same page. */
#ifndef RAFFLE_REPORT_INTERNAL_H
#define RAFFLE_REPORT_INTERNAL_H

#include <cjson/cJSON.h>
#include "raffle/core.h"

/* ---- reading rows -------------------------------------------------------------- */
const cJSON *rep_get(const cJSON *o, const char *k);   /* borrowed; NULL when absent */
double       rep_num(const cJSON *o, const char *k);   /* NAN when absent or not a number */
const char  *rep_str(const cJSON *o, const char *k);   /* "" when absent or not a string */
int          rep_done(const cJSON *row);
void         rep_html(rf_buf *b, const char *s);       /* appends s HTML-escaped */
/* Makes room for element n of *v (each size bytes, *cap of them): 0 out of
 * memory (then *v is unchanged). */
int          rep_grow(void **v, int *cap, int n, size_t size);

/* How the page writes a number (html.c): percent, a fraction, kB/MB, ×,
 * significant digits, an integer, k/M/G. */
typedef enum rep_fmt { F_TEXT, F_PCT, F_FRAC, F_BYTES, F_RATIO, F_G, F_INT, F_COUNT, F_STATUS, F_SETTING } rep_fmt;
void         rep_fmt_num(rf_buf *b, rep_fmt f, double x);

/* Task rows by id (bisection over a sorted copy): plots find parents in
 * O(log n) on 100,000-task sweeps. An id is unique within a sweep; in a
 * comparison of sweeps the same id in two stores is the same work (ids
 * hash the settings), so either row serves. */
typedef struct rep_index { const cJSON **v; int n; } rep_index;
void         rep_index_build(rep_index *ix, const cJSON *tasks);   /* out of memory: finds nothing */
const cJSON *rep_index_find(const rep_index *ix, const char *id);
void         rep_index_free(rep_index *ix);
/* A row's first parent when it is done, else NULL. */
const cJSON *rep_done_parent(const rep_index *ix, const cJSON *row);

/* ---- the SVG plot engine (svg.c) -----------------------------------------------
 * A plot is series of points; points with the same series and group are
 * one marker: mean of x and y, error bar ±1 sample standard deviation of y,
 * n in the tooltip and legend. Callers group by the label without the seed
 * (a row's "group"), so only seeds are ever averaged. Axes get nice ticks
 * (1, 2, 5 × 10^k), log or linear, and unit-aware tick labels. The legend
 * sits below the plot and grows with the series: it never hides one. */
typedef enum ax_unit { AX_PLAIN, AX_PERCENT, AX_BYTES, AX_RATIO, AX_CATEGORY } ax_unit;
typedef struct axis {
    const char *label;
    int         log, rev;      /* log scale; values decrease to the right */
    ax_unit     unit;
    const char *const *cats;   /* AX_CATEGORY: names of x = 0, 1, ... (borrowed) */
    int         ncats;
} axis;

enum { PL_LINES = 1, PL_PARETO = 2, PL_AGG = 4 };          /* plot flags */
/* series styles: ST_REF a grey reference; ST_HLINE also a dashed line
 * across the whole plot at each of its markers' y (the dense model) */
enum { ST_DASHED = 1, ST_HOLLOW = 2, ST_NOLINE = 4, ST_REF = 8, ST_HLINE = 16 };

typedef struct plot plot;
/* A new plot (title, caption and axis labels copied). NULL out of memory. */
plot *plot_new(const char *title, const char *caption, axis x, axis y, unsigned flags);
void  plot_free(plot *p);   /* accepts NULL */
/* The series called name (created with style on first use); -1 out of
 * memory. _like: a new series takes series like's colour and shape (a
 * method's "before fine-tuning" next to its line). Reference series
 * (ST_REF) are dark grey and take no colour from the others. */
int   plot_series(plot *p, const char *name, unsigned style);
int   plot_series_like(plot *p, const char *name, unsigned style, int like);
/* Adds (x, y) to the marker (series, group); ref (borrowed, a row) is what
 * the Pareto table lists and tip the tooltip's first line (copied; the
 * group when NULL). Non-finite values are dropped. */
void  plot_add(plot *p, int series, const char *group, double x, double y, const cJSON *ref, const char *tip);
/* A grey segment from (x1, y1) to (x2, y2), under the markers (quantized
 * model -> its float parent). */
void  plot_link(plot *p, double x1, double y1, double x2, double y2);
/* The rows on the Pareto frontier (smaller x, higher y) in x order;
 * returns how many (at most max). */
int   plot_frontier(const plot *p, const cJSON **out, int max);
/* Appends the plot as <figure> (title, SVG, caption, then extra_html when
 * not NULL) to b. */
void  plot_render(rf_buf *b, const plot *p, const char *extra_html);

/* ---- the study's plots (plots.c) --------------------------------------------------- */
/* Appends every plot the report's rows have data for, with the Pareto
 * members' tables. */
void  rep_plots(rf_buf *b, const cJSON *rep);

#endif
