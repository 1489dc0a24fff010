/* report.html: one self-contained page (no network; one small inline
 * script for the task table, the page reads fine without it).
 *
 * Top to bottom: the counts, the runs and engines, the plots
 * (src/report/plots.c), then the tasks: one row per task, its readable
 * label linking to its log and metrics, columns in groups (task, settings,
 * accuracy, size, speed, run) that checkboxes show and hide, so the table
 * fits a screen instead of scrolling thirty columns sideways. Clicking a
 * header sorts by it (numbers as numbers), the filter box keeps the rows
 * containing every word typed ("synflow sparsity=0.9 failed"). Columns
 * that are empty in every row are left out, and settings every task
 * shares are said once above the table. */
#include "raffle/report.h"
#include "report/report_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the task table's columns --------------------------------------------------------- */

typedef struct tcol { const char *group, *key, *head, *tip; rep_fmt fmt; } tcol;

static const char *const groups[] = {"task", "settings", "accuracy", "size", "speed", "more", "run"};
static const char *const group_doc[] = {"task", "varied settings", "accuracy (split named)", "size", "speed (varies run to run)",
                                        "more", "run details"};
enum { G_TASK, G_SETTINGS, G_ACC, G_SIZE, G_SPEED, G_MORE, G_RUN, G_COUNT_ };

/* Fixed columns after the label (the settings group's varied keys are
 * added from the report's "setting_columns" before "seed"). */
static const tcol fixed[] = {
    {"task", "status", "status", NULL, F_STATUS},
    {"task", "sweep", "sweep", NULL, F_TEXT},
    {"settings", "dataset", "dataset", NULL, F_TEXT},
    {"settings", "model", "model", NULL, F_TEXT},
    {"settings", "target_sparsity", "target sparsity", "the sparsity asked for", F_FRAC},
    {"settings", "round", "round", "lottery round", F_INT},
    {"settings", "temperature", "T", "distillation temperature", F_G},
    {"settings", "seed", "seed", NULL, F_INT},
    {"accuracy", "accuracy", "test acc", "accuracy on the test split", F_PCT},
    {"accuracy", "val_accuracy", "val acc", "accuracy on the validation split", F_PCT},
    {"accuracy", "accuracy_before_finetune", "test acc before FT", "test accuracy right after pruning, before fine-tuning", F_PCT},
    {"accuracy", "fp32_accuracy", "float test acc", "test accuracy of the float model before quantization", F_PCT},
    {"size", "sparsity", "sparsity", "achieved: fraction of prunable weights that are zero", F_FRAC},
    {"size", "compression_ratio", "compression", "raw fp32 bytes of the model / bytes on disk", F_RATIO},
    {"size", "bytes", "size", "checkpoint bytes on disk", F_BYTES},
    {"size", "flops", "FLOPs", "floating-point operations per inference", F_COUNT},
    {"size", "collapsed_layers", "collapsed", "layers with nothing left", F_INT},
    {"speed", "latency_ms", "latency (ms)", "batch-1 inference latency, deployed kernels", F_G},
    {"speed", "dense_latency_ms", "dense latency (ms)", "the same model run dense", F_G},
    {"speed", "throughput", "samples/s", "batch-64 inference throughput", F_G},
    {"speed", "seconds", "task s", "wall seconds of the task", F_G},
    {"more", "kind", "kind", NULL, F_TEXT},
    {"more", "loss", "test loss", "loss on the test split", F_G},
    {"more", "val_loss", "val loss", "loss on the validation split", F_G},
    {"more", "best_iteration", "early-stop step", "step of the best periodic evaluation", F_INT},
    {"more", "parameters", "params", NULL, F_INT},
    {"more", "nonzero_parameters", "nonzero", "nonzero parameters", F_INT},
    {"run", "attempts", "attempts", NULL, F_INT},
    {"run", "class", "failure", NULL, F_TEXT},
    {"run", "message", "message", NULL, F_TEXT},
    {"run", "engine", "engine", NULL, F_TEXT},
    {"run", "id", "id", NULL, F_TEXT},
};

static const cJSON *cell_value(const cJSON *t, const tcol *c) {
    return c->fmt == F_SETTING ? rf_job_setting_get(rep_get(t, "settings"), c->key) : rep_get(t, c->key);
}

void rep_fmt_num(rf_buf *b, rep_fmt f, double x) {
    switch (f) {
    case F_PCT: rf_buf_printf(b, "%.2f%%", x * 100); break;
    case F_FRAC: rf_buf_printf(b, "%.4f", x); break;
    case F_BYTES: rf_buf_printf(b, x >= 1e6 ? "%.2f MB" : "%.1f kB", x >= 1e6 ? x / 1e6 : x / 1e3); break;
    case F_RATIO: rf_buf_printf(b, "%.2f×", x); break;
    case F_INT: rf_buf_printf(b, "%.0f", x); break;
    case F_COUNT: {
        static const char *const u[] = {"", "k", "M", "G", "T"};
        int k = 0;
        while (k < 4 && fabs(x) >= 1000) { x /= 1000; k++; }
        rf_buf_printf(b, k ? "%.3g%s" : "%.0f%s", x, u[k]);
        break;
    }
    default: rf_buf_printf(b, "%.4g", x);
    }
}

static void cell(rf_buf *b, const cJSON *t, const tcol *c) {
    const cJSON *v = cell_value(t, c);
    const char *g = c->group;
    if (cJSON_IsNumber(v)) {
        rf_buf_printf(b, "<td class='g-%s' data-v='%.17g'>", g, v->valuedouble);
        rep_fmt_num(b, c->fmt, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        rf_buf_printf(b, "<td class='g-%s s%s%s'>", g, c->fmt == F_STATUS ? " " : "", c->fmt == F_STATUS ? v->valuestring : "");
        rep_html(b, v->valuestring);
    } else if (cJSON_IsBool(v)) rf_buf_printf(b, "<td class='g-%s s'>%s", g, cJSON_IsTrue(v) ? "true" : "false");
    else rf_buf_printf(b, "<td class='g-%s'>", g);
    rf_buf_printf(b, "</td>");
}

/* A column is worth showing when some row has a value, and for a setting
 * or the sweep when two rows differ. */
static int column_useful(const cJSON *tasks, const tcol *c, int compare) {
    if (strcmp(c->key, "sweep") == 0) return compare;
    int settings = strcmp(c->group, "settings") == 0 && strcmp(c->key, "seed") != 0;
    const cJSON *first = NULL;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const cJSON *v = cell_value(t, c);
        if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0])) continue;
        if (!settings) return 1;
        if (!first) first = v;
        else if (!cJSON_Compare(first, v, 1)) return 1;
    }
    return 0;
}

/* "dataset fashion-mnist, model lenet-300-100": settings columns with one
 * value in every row, said once instead of repeated in each. */
static void shared_settings(rf_buf *b, const cJSON *tasks) {
    static const char *const keys[] = {"dataset", "model"};
    int any = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const cJSON *first = NULL;
        int same = 1;
        for (const cJSON *t = tasks->child; t && same; t = t->next) {
            const cJSON *v = rep_get(t, keys[k]);
            if (!cJSON_IsString(v)) continue;
            if (!first) first = v;
            else same = strcmp(first->valuestring, v->valuestring) == 0;
        }
        if (!first || !same) continue;
        rf_buf_printf(b, "%s%s <b>", any ? ", " : "<p>Every task: ", keys[k]);
        rep_html(b, first->valuestring);
        rf_buf_printf(b, "</b>");
        any = 1;
    }
    if (any) rf_buf_printf(b, ".</p>\n");
}

static void task_table(rf_buf *b, const cJSON *rep) {
    const cJSON *tasks = rep_get(rep, "tasks"), *scols = rep_get(rep, "setting_columns");
    int compare = cJSON_GetArraySize(rep_get(rep, "sweeps")) > 1;
    enum { MAXC = 96 };
    tcol cols[MAXC];
    int nc = 0;
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0] && nc < MAXC; k++) {
        if (strcmp(fixed[k].key, "seed") == 0)   /* the varied settings before the seed */
            for (const cJSON *s = scols ? scols->child : NULL; s && nc < MAXC - 1; s = s->next)
                if (cJSON_IsString(s)) cols[nc++] = (tcol){"settings", s->valuestring, s->valuestring, "varied setting", F_SETTING};
        if (column_useful(tasks, &fixed[k], compare)) cols[nc++] = fixed[k];
    }
    int failed = 0;
    for (const cJSON *t = tasks->child; t && !failed; t = t->next) failed = rep_str(t, "class")[0] != '\0';
    shared_settings(b, tasks);
    rf_buf_printf(b, "<div class='controls'><input id='filter' type='search' size='40' placeholder='filter: every word must appear, "
                     "e.g. synflow sparsity=0.9 done'> <span id='count'></span> &nbsp; columns:");
    int hidden[G_COUNT_] = {0};
    hidden[G_SPEED] = hidden[G_MORE] = 1;
    hidden[G_RUN] = !failed;
    for (int g = 1; g < G_COUNT_; g++)
        rf_buf_printf(b, " <label><input type='checkbox' data-group='%s'%s> %s</label>", groups[g], hidden[g] ? "" : " checked",
                      group_doc[g]);
    rf_buf_printf(b, "</div>\n<table id='tasks' class='tasks");
    for (int g = 0; g < G_COUNT_; g++) if (hidden[g]) rf_buf_printf(b, " hide-%s", groups[g]);
    rf_buf_printf(b, "'><thead><tr>");
    /* the group row: one cell spanning each group's columns (the task
     * group's starts with the label column) */
    for (int k = 0; k < nc;) {
        int e = k;
        while (e < nc && strcmp(cols[e].group, cols[k].group) == 0) e++;
        int lead = k == 0 && strcmp(cols[k].group, "task") == 0;
        rf_buf_printf(b, "<th class='grp g-%s' colspan='%d'>%s</th>", cols[k].group, e - k + lead, cols[k].group);
        k = e;
    }
    rf_buf_printf(b, "</tr><tr><th class='g-task' title='experiment/method/varied settings/seed; links: log, metrics'>task</th>");
    for (int k = 0; k < nc; k++) {
        rf_buf_printf(b, "<th class='g-%s'", cols[k].group);
        if (cols[k].tip) { rf_buf_printf(b, " title='"); rep_html(b, cols[k].tip); rf_buf_printf(b, "'"); }
        rf_buf_printf(b, ">");
        rep_html(b, cols[k].head);
        rf_buf_printf(b, "</th>");
    }
    rf_buf_printf(b, "</tr></thead><tbody>\n");
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const char *id = rep_str(t, "id"), *link = rep_str(t, "link");
        rf_buf_printf(b, "<tr id='t-");
        rep_html(b, rep_str(t, "sweep"));
        rf_buf_printf(b, "-%s'><td class='g-task s lbl' title='", id);
        rep_html(b, rep_str(t, "sweep"));
        rf_buf_printf(b, " task %s'>", id);
        rep_html(b, rep_str(t, "label"));
        if (rep_done(t) || rep_str(t, "class")[0]) {
            rf_buf_printf(b, " <span class='files'><a href='");
            rep_html(b, link);
            rf_buf_printf(b, "tasks/%s/log.txt'>log</a>", id);
            if (rep_done(t)) {
                rf_buf_printf(b, " <a href='");
                rep_html(b, link);
                rf_buf_printf(b, "tasks/%s/metrics.json'>metrics</a>", id);
            }
            rf_buf_printf(b, "</span>");
        }
        rf_buf_printf(b, "</td>");
        for (int k = 0; k < nc; k++) cell(b, t, &cols[k]);
        rf_buf_printf(b, "</tr>\n");
    }
    rf_buf_printf(b, "</tbody></table>\n");
}

/* ---- the page's other parts ------------------------------------------------------------ */

/* The runs of the sweep (one per `raffle sweep` that touched the store):
 * time, host, ranks and the Slurm job they ran in. */
static void runs_html(rf_buf *b, const cJSON *runs, int compare) {
    if (!cJSON_IsArray(runs) || !runs->child) return;
    rf_buf_printf(b, "<details><summary>Runs: %d</summary><table><tr>%s<th>started</th><th>host</th><th>ranks</th><th>reused</th>"
                     "<th>slurm job</th><th>array</th><th>nodes</th><th>restarts</th></tr>\n",
                  cJSON_GetArraySize(runs), compare ? "<th>sweep</th>" : "");
    for (const cJSON *r = runs->child; r; r = r->next) {
        const cJSON *sl = rep_get(r, "slurm");
        rf_buf_printf(b, "<tr>");
        if (compare) { rf_buf_printf(b, "<td class='s'>"); rep_html(b, rep_str(r, "sweep")); rf_buf_printf(b, "</td>"); }
        rf_buf_printf(b, "<td class='s'>");
        rep_html(b, rep_str(r, "time"));
        rf_buf_printf(b, "</td><td class='s'>");
        rep_html(b, rep_str(r, "host"));
        rf_buf_printf(b, "</td><td>%.0f</td><td>%.0f</td><td class='s'>", rep_num(r, "ranks"), rep_num(r, "reused"));
        rep_html(b, rep_str(sl, "job_id"));
        rf_buf_printf(b, "</td><td class='s'>");
        if (rep_get(sl, "array_job_id")) {
            rep_html(b, rep_str(sl, "array_job_id"));
            rf_buf_printf(b, "_");
            rep_html(b, rep_str(sl, "array_task_id"));
        }
        rf_buf_printf(b, "</td><td class='s'>");
        rep_html(b, rep_str(sl, "nodelist"));
        rf_buf_printf(b, "</td><td>");
        if (isfinite(rep_num(sl, "restart_count"))) rf_buf_printf(b, "%.0f", rep_num(sl, "restart_count"));
        rf_buf_printf(b, "</td></tr>\n");
    }
    rf_buf_printf(b, "</table></details>\n");
}

/* The engines the tasks ran on (metrics.json "engine"): one row per
 * distinct one, with the ISA used, the BLAS library and core, and every
 * engine option's value, so a report says which kernels made its numbers. */
static void engines_html(rf_buf *b, const cJSON *tasks) {
    enum { MAX_ENGINES = 16 };
    const cJSON *seen[MAX_ENGINES];
    int count[MAX_ENGINES], n = 0;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const cJSON *e = rep_get(t, "engine_detail");
        if (!cJSON_IsObject(e)) continue;
        int k = 0;
        while (k < n && !cJSON_Compare(seen[k], e, 1)) k++;
        if (k == n && n < MAX_ENGINES) { seen[n] = e; count[n++] = 0; }
        if (k < n) count[k]++;
    }
    if (!n) return;
    const cJSON *opts0 = rep_get(seen[0], "options");
    rf_buf_printf(b, "<details><summary>Engine: %d distinct</summary><table><tr><th>tasks</th><th>ISA used</th><th>CPU ISA</th><th>BLAS</th>"
                     "<th>BLAS core</th>", n);
    for (const cJSON *o = opts0 ? opts0->child : NULL; o; o = o->next) { rf_buf_printf(b, "<th>"); rep_html(b, o->string); rf_buf_printf(b, "</th>"); }
    rf_buf_printf(b, "</tr>\n");
    for (int k = 0; k < n; k++) {
        const cJSON *e = seen[k], *bl = rep_get(e, "blas");
        rf_buf_printf(b, "<tr><td>%d</td><td class='s'>", count[k]);
        rep_html(b, rep_str(e, "isa"));
        rf_buf_printf(b, "</td><td class='s'>");
        rep_html(b, rep_str(e, "cpu_isa"));
        rf_buf_printf(b, "</td><td class='s'>");
        rep_html(b, rep_str(bl, "name"));
        rf_buf_printf(b, " ");
        rep_html(b, rep_str(bl, "version"));
        rf_buf_printf(b, "</td><td class='s'>");
        rep_html(b, rep_str(bl, "core"));
        rf_buf_printf(b, "</td>");
        for (const cJSON *o = opts0 ? opts0->child : NULL; o; o = o->next) {
            const cJSON *v = rep_get(rep_get(e, "options"), o->string);
            rf_buf_printf(b, "<td class='s'>");
            if (cJSON_IsString(v)) rep_html(b, v->valuestring);
            else if (cJSON_IsNumber(v)) rf_buf_printf(b, "%g", v->valuedouble);
            rf_buf_printf(b, "</td>");
        }
        rf_buf_printf(b, "</tr>\n");
    }
    rf_buf_printf(b, "</table></details>\n");
}

/* What the accuracies are measured on: the split and, when every task
 * capped its evaluation (settings "eval_limit"), how many samples. */
static void accuracy_note(rf_buf *b, const cJSON *tasks) {
    double lim = NAN;
    int same = 1, val = 0;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t)) continue;
        val |= isfinite(rep_num(t, "val_accuracy"));
        double l = rep_num(rep_get(t, "settings"), "eval_limit");
        if (!isfinite(l)) continue;
        if (isnan(lim)) lim = l;
        else if (l != lim) same = 0;
    }
    rf_buf_printf(b, "<p class='note'>Test accuracy is measured on the test split");
    if (same && lim > 0) rf_buf_printf(b, ", its first %.0f samples (the tasks' <code>eval_limit</code>)", lim);
    else if (!same) rf_buf_printf(b, " (with different <code>eval_limit</code>s: see each task's settings)");
    rf_buf_printf(b, "%s. Hover over a marker for its task and values.</p>\n",
                  val ? "; validation accuracy (val acc in the table) on the validation split the tasks select on" : "");
}

static const char style[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}h2{margin-top:28px}"
    "h3{font-size:14px;margin:4px 0 6px}table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}td{white-space:nowrap}td.g-run{white-space:normal;max-width:420px}"
    "th{background:#f4f4f4}thead th{position:sticky;top:0;cursor:pointer}thead tr:first-child th{top:0}"
    "thead tr:nth-child(2) th{top:22px}th.grp{background:#e8eef6;text-align:center;cursor:default}"
    "th[data-sort=asc]:after{content:' \\25B2'}th[data-sort=desc]:after{content:' \\25BC'}"
    "td.s{text-align:left}.files{font-size:11px;margin-left:6px}.files a{color:#666}"
    ".done{color:#1a7f37}.failed{color:#c00}.skipped,.pending{color:#888}.preempted,.running{color:#b35900}"
    "figure{display:inline-block;vertical-align:top;margin:8px 12px 16px 0;padding:8px;border:1px solid #eee;max-width:620px}"
    "figcaption{font-size:12px;color:#555;max-width:600px}.cards span{display:inline-block;margin-right:18px;font-size:15px}"
    ".controls{margin:8px 0;font-size:13px}.controls label{margin-left:10px;white-space:nowrap}.note{font-size:13px;color:#444}"
    "details{margin:6px 0}summary{cursor:pointer;font-weight:bold}details.members summary{font-weight:normal;font-size:13px}"
    "tr[hidden]{display:none}"
    "table.hide-settings .g-settings,table.hide-accuracy .g-accuracy,table.hide-size .g-size,table.hide-speed .g-speed,"
    "table.hide-more .g-more,table.hide-run .g-run{display:none}";

/* Sort on header click (numbers by data-v, text otherwise, empty last),
 * filter on every word, column groups on the checkboxes. */
static const char script[] =
    "(function(){var t=document.getElementById('tasks');if(!t)return;var tb=t.tBodies[0],f=document.getElementById('filter'),"
    "cnt=document.getElementById('count');"
    "function apply(){var q=f.value.toLowerCase().split(/\\s+/).filter(Boolean),n=0;"
    "for(var r of tb.rows){var s=r.textContent.toLowerCase();var ok=q.every(function(w){return s.indexOf(w)>=0;});r.hidden=!ok;if(ok)n++;}"
    "cnt.textContent=n+' of '+tb.rows.length+' tasks';}"
    "f.addEventListener('input',apply);var hs=t.tHead.rows[1].cells;"
    "Array.prototype.forEach.call(hs,function(h,i){h.addEventListener('click',function(){var asc=h.dataset.sort!=='asc';"
    "Array.prototype.forEach.call(hs,function(o){delete o.dataset.sort;});h.dataset.sort=asc?'asc':'desc';"
    "var rows=Array.prototype.slice.call(tb.rows);rows.sort(function(a,b){var x=a.cells[i],y=b.cells[i],u=x.dataset.v,v=y.dataset.v,"
    "p=x.textContent,q=y.textContent;if(u!==undefined&&v!==undefined)return (parseFloat(u)-parseFloat(v))*(asc?1:-1);"
    "if(u!==undefined)return -1;if(v!==undefined)return 1;if(!p!==!q)return p?-1:1;return p.localeCompare(q)*(asc?1:-1);});"
    "rows.forEach(function(r){tb.appendChild(r);});});});"
    "document.querySelectorAll('input[data-group]').forEach(function(c){c.addEventListener('change',function(){"
    "t.classList.toggle('hide-'+c.dataset.group,!c.checked);});});apply();})();";

rf_status rf_report_html(rf_ctx *ctx, const cJSON *rep, char **out) {
    rf_buf b = {0};
    const cJSON *sum = rep_get(rep, "summary"), *tasks = rep_get(rep, "tasks");
    if (!cJSON_IsArray(tasks)) return rf_error(ctx, RF_ERR_FORMAT, "report: no \"tasks\" list");
    int compare = cJSON_GetArraySize(rep_get(rep, "sweeps")) > 1;
    rf_buf_printf(&b, "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>raffle report: ");
    rep_html(&b, rep_str(rep, "name"));
    rf_buf_printf(&b, "</title><style>%s</style></head><body>\n<h1>raffle %s: ", style, compare ? "comparison" : "sweep");
    rep_html(&b, rep_str(rep, "name"));
    rf_buf_printf(&b, "</h1><p>generated %s</p><div class='cards'>", rep_str(rep, "generated"));
    static const char *const keys[] = {"total", "done", "failed", "skipped", "pending", "running", "preempted"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        double v = rep_num(sum, keys[k]);
        if (isfinite(v) && (v > 0 || k < 2)) rf_buf_printf(&b, "<span class='%s'><b>%.0f</b> %s</span>", keys[k], v, keys[k]);
    }
    if (isfinite(rep_num(sum, "best_val_accuracy")))
        rf_buf_printf(&b, "<span>best on validation <b>%.2f%%</b>, its test accuracy <b>%.2f%%</b></span>",
                      rep_num(sum, "best_val_accuracy") * 100, rep_num(sum, "test_accuracy_at_best_val") * 100);
    rf_buf_printf(&b, "</div>\n");
    runs_html(&b, rep_get(rep, "runs"), compare);
    engines_html(&b, tasks);
    rf_buf_printf(&b, "<h2>Plots</h2>\n");
    accuracy_note(&b, tasks);
    rep_plots(&b, rep);
    rf_buf_printf(&b, "<h2>Tasks</h2>\n");
    task_table(&b, rep);
    rf_buf_printf(&b, "<p class='note'>Click a column header to sort. Timings (speed group) vary run to run; every other column is "
                      "reproducible.</p><script>%s</script></body></html>\n", script);
    if (b.oom) { rf_free(b.p); return rf_error(ctx, RF_ERR_NOMEM, "out of memory building the report"); }
    *out = b.p;
    return RF_OK;
}
