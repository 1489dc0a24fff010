/* raffle help --markdown jobs|engine: the settings reference printed from
 * the tables (raffle/settings.h, the kind descriptors of raffle/task.h, the
 * engine options of raffle/engine.h). docs/jobs.md and docs/engine.md hold
 * this output between their "generated" markers, and
 * tests/integration/docs_generated.sh fails when they differ, so the docs
 * cannot drift from the code. */
#include "cli/cli.h"
#include "raffle/engine.h"
#include "raffle/job.h"
#include "raffle/prune.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* A summary as a sentence: its first letter in upper case. */
static void sentence(rf_buf *b, const char *s) {
    if (s && *s) rf_buf_printf(b, "%c%s", toupper((unsigned char)*s), s + 1);
}

/* text as a markdown table cell: '|' escaped */
static void md_cell(rf_buf *b, const char *t) {
    for (; t && *t; t++) rf_buf_printf(b, *t == '|' ? "\\|" : "%c", *t);
}

/* The pruning method table (src/compress/prune_methods.c). */
static void methods_md(rf_buf *b) {
    rf_buf_printf(b, "\nMethods (the method table, src/compress/prune_methods.c):\n\n"
                     "| method | data | gradients | at init | prunes | reads | score |\n|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < rf_prune_method_count(); m++) {
        const rf_prune_method_desc *d = rf_prune_method_get(m);
        rf_buf_printf(b, "| `%s` | %s | %s | %s | %s | ", d->name, d->flags & RF_PM_DATA ? "yes" : "no",
                      d->flags & RF_PM_GRAD ? "yes" : "no", d->flags & RF_PM_AT_INIT ? "designed for it" : "",
                      d->flags & RF_PM_HIGHEST ? "highest" : "lowest");
        for (const char *const *k = d->keys; k && *k; k++) rf_buf_printf(b, "%s`%s`", k == d->keys ? "" : ", ", *k);
        rf_buf_printf(b, " | ");
        md_cell(b, d->summary);
        rf_buf_printf(b, " |\n");
    }
}

static void jobs_md(rf_buf *b) {
    rf_buf_printf(b, "### Top level\n\n");
    rf_settings_markdown(b, rf_job_top_settings(), 0);
    rf_buf_printf(b, "\n### Data preparation\n\n"
                     "How every task turns its dataset into training, validation and test splits\n"
                     "(docs/data.md): at the top level and in each experiment (overriding the top level;\n"
                     "there a list is a grid axis). Every task that reads data records them in its\n"
                     "settings (and so in its id); the command line takes them as flags (`--pad-to 32`).\n"
                     "Selection (periodic evaluation, `best_iteration`, early stopping) reads the\n"
                     "validation split only; the test split is evaluated at the end and reported.\n\n");
    rf_settings_markdown(b, rf_data_settings, 0);
    rf_buf_printf(b, "\n### `train` (training settings)\n\n"
                     "Valid at the top level, in each experiment (`train`, overriding the top\n"
                     "level key by key) and in the experiment-specific training objects\n"
                     "(`finetune`, `qat_train`, `teacher_train`, ...), which override the\n"
                     "experiment's. Inside experiments every key may be a list (a grid axis).\n"
                     "The command line takes the same keys as flags (`--weight-decay`).\n\n");
    rf_settings_markdown(b, rf_train_settings, 0);
    rf_buf_printf(b, "\n### `limits`\n\n");
    rf_settings_markdown(b, rf_job_limit_settings(), 0);
    rf_buf_printf(b, "\n`raffle sweep --memory-mb`, `--time-limit`, `--retries` override them.\n\n"
                     "### `engine`\n\nEngine options (docs/engine.md), at the top level and per experiment;\n"
                     "they are part of every task's settings (and id) when given.\n\n"
                     "### Experiments\n\nCommon keys of every experiment:\n\n");
    rf_settings_markdown(b, rf_job_experiment_settings(), 0);
    for (int k = 0; k < RF_JOB_KIND_COUNT_; k++) {
        const rf_kind *d = rf_kind_get(k);
        if (!d->experiment || (d->flags & RF_KIND_DIAG)) continue;
        rf_buf_printf(b, "\n#### `%s`: %s\n\nDAG: %s.\n\n", d->experiment, d->summary, d->exp_doc ? d->exp_doc : "");
        rf_settings_markdown(b, d->exp_keys, 0);
        if (k == RF_JOB_PRUNE) methods_md(b);
    }
    rf_buf_printf(b, "\n#### Diagnostics\n\n");
    for (int k = 0; k < RF_JOB_KIND_COUNT_; k++) {
        const rf_kind *d = rf_kind_get(k);
        if (!d->experiment || !(d->flags & RF_KIND_DIAG)) continue;
        rf_buf_printf(b, "`%s` (%s; DAG: %s):\n\n", d->experiment, d->summary, d->exp_doc ? d->exp_doc : "");
        rf_settings_markdown(b, d->exp_keys, 0);
        rf_buf_printf(b, "\n");
    }
    rf_buf_printf(b, "## Task settings\n\n"
                     "What each task kind reads (its task's `settings`, and the flags of `raffle KIND`), besides\n"
                     "the common keys below and, for kinds that train, the training keys. An expansion writes\n"
                     "every default out (keys marked optional excepted: they are written only when set),\n"
                     "so a task's settings fully describe its work.\n\n"
                     "Common keys (kinds that read data; the data preparation keys above too):\n\n");
    rf_settings_markdown(b, rf_task_common_settings, 0);
    for (int k = 0; k < RF_JOB_KIND_COUNT_; k++) {
        const rf_kind *d = rf_kind_get(k);
        if (d->flags & RF_KIND_DIAG) continue;
        rf_buf_printf(b, "\n### `%s`\n\n", d->name);
        sentence(b, d->summary);
        rf_buf_printf(b, ". Parents: %s. ", d->parents_doc ? d->parents_doc : "none");
        if (d->flags & RF_KIND_TRAINS) {
            rf_buf_printf(b, "Training keys: yes");
            if (d->train_when) rf_buf_printf(b, " (only when %s)", d->train_when);
            for (const char *const *o = d->train_omit; o && *o; o++) rf_buf_printf(b, "%s`%s`", o == d->train_omit ? ", except " : ", ", *o);
            rf_buf_printf(b, ". ");
        }
        rf_buf_printf(b, "Stop-aware: %s. Resumable: %s.\n\n", (d->flags & RF_KIND_STOP) ? "yes" : "no",
                      (d->flags & RF_KIND_RESUMABLE) ? "yes" : "no");
        rf_settings_markdown(b, d->keys, 0);
    }
}

static void engine_md(rf_buf *b) {
    rf_buf_printf(b, "| option | values | default | environment | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < RF_ENGINE_COUNT_; i++) {
        const rf_engine_option *o = &rf_engine_options[i];
        char vals[256], def[32];
        size_t k = 0;
        vals[0] = '\0';
        if (o->values)
            for (int v = 0; o->values[v]; v++) k += (size_t)snprintf(vals + k, sizeof vals - k, "%s`%s`", v ? " \\| " : "", o->values[v]);
        else snprintf(vals, sizeof vals, "integer [%d, %d]", o->lo, o->hi);
        rf_engine e;
        rf_engine_builtin(&e);
        rf_engine_value_text(&e, i, def, sizeof def);
        rf_buf_printf(b, "| `%s` | %s | `%s` | `%s` | %s |\n", o->name, vals, def, o->env, o->doc);
    }
}

int rf_cmd_help(int argc, char **argv) {
    const char *pos[1];
    const char *md = NULL;
    int done = 0;
    const cli_opt opts[] = {
        {"markdown", CLI_STR, &md, "jobs|engine", "print the settings reference (docs/jobs.md, docs/engine.md)", 1},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("help", "--markdown jobs|engine", "Prints the reference tables generated from the settings tables.",
                       opts, argc, argv, pos, 0, 0, &done);
    if (rc || done) return rc;
    rf_buf b = {0};
    if (strcmp(md, "jobs") == 0) jobs_md(&b);
    else if (strcmp(md, "engine") == 0) engine_md(&b);
    else { cli_err("help", "--markdown: expected jobs or engine, got '%s'", md); return 2; }
    if (b.oom || !b.p) { rf_buf_free(&b); cli_err("help", "out of memory"); return 1; }
    fputs(b.p, stdout);
    rf_buf_free(&b);
    return 0;
}
