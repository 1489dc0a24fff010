/* raffle settings: one table per group of settings (key, type, default,
 * bounds, unit, one-line doc), read by every place that takes them.
 *
 * The idea is zstd's ZSTD_cParam_getBounds(): one description of each
 * parameter drives setting it, checking it and documenting it. Here a table
 * of rf_setting drives
 *  - job files: validation with JSON-path errors and did-you-mean, defaults
 *    filled in (src/job), grid axes;
 *  - task settings: what a task kind's runner reads and the defaults it
 *    falls back to (rf_settings_num & co.: a runner never spells a default);
 *  - command-line flags: `raffle <kind> --key VALUE` (key with '_' as '-'),
 *    the same checker, the same defaults (src/cli);
 *  - documentation: docs/jobs.md's key tables and `raffle <kind> --help`
 *    are printed from the tables (rf_settings_markdown), and a test fails
 *    when the committed docs differ from what the tables print.
 *
 * The training keys every kind that trains reads are one table,
 * rf_train_settings; each task kind adds its own (raffle/task.h rf_kind). */
#ifndef RAFFLE_SETTINGS_H
#define RAFFLE_SETTINGS_H

#include <cjson/cJSON.h>
#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rf_stype {
    RF_SET_NUM = 0,   /* finite number in [lo, hi] (lo_open/hi_open: excluded)   */
    RF_SET_INT,       /* integral number in [lo, hi]                             */
    RF_SET_ENUM,      /* one of `choices`                                        */
    RF_SET_STR,       /* non-empty string                                        */
    RF_SET_BOOL,      /* true | false                                            */
    RF_SET_DATA,      /* a dataset name (raffle/data.h rf_data_load)             */
    RF_SET_MODEL,     /* a preset name or a model spec file                      */
    RF_SET_LIST,      /* list of `choices` strings, or of datasets without them  */
    RF_SET_OBJ,       /* object checked against `sub`                            */
    RF_SET_OBJLIST,   /* list of objects (the experiments; checked by the job)   */
    RF_SET_ENGINE,    /* engine options object (raffle/engine.h)                 */
    RF_SET_RATES,     /* object {glob pattern: rate in [0, 1]}                   */
    RF_SET_KEYS,      /* list of setting names (non-empty strings)               */
    RF_SET_WHERE,     /* object {setting: value or list of values}: a filter     */
    RF_SET_INTMAP,    /* object {pattern: integer in [lo, hi]} (quantize's layer_bits) */
    RF_SET_FILE,      /* a file path, or a pinned URL "URL#sha256=HEX" (raffle/data.h) */
    RF_SET_TYPE_COUNT_
} rf_stype;

/* rf_setting.flags */
enum {
    RF_SF_GRID     = 1 << 0,  /* inside an experiment a list is a grid axis        */
    RF_SF_REQUIRED = 1 << 1,  /* no default: must be given                         */
    /* The default is documented and what readers fall back to, but it is not
     * written into task settings when the key is absent (keys added after
     * task ids were published: writing them would change every id). */
    RF_SF_OPTIONAL = 1 << 2,
    RF_SF_NOCLI    = 1 << 3,  /* no command-line flag (set by the expansion)      */
    /* 0 is the value of "not given" (iterations: train by epochs): written
     * as the default, but a flag never gives it (exit 2: leave it out). */
    RF_SF_ZERO_UNSET = 1 << 4,
    /* RF_SET_ENGINE: also takes the options that do not change results (the
     * thread count): the process's, never a task's setting (a job's
     * top-level "engine"). */
    RF_SF_PROCESS  = 1 << 5,
    /* A list is one value (each member checked like a single one), never a
     * grid axis: a pipeline stage's `from` naming several experiments. */
    RF_SF_LISTVAL  = 1 << 6,
};

typedef struct rf_setting {
    const char *key;
    rf_stype    type;
    unsigned    flags;            /* RF_SF_*                                         */
    double      lo, hi;           /* RF_SET_NUM / RF_SET_INT bounds                    */
    unsigned char lo_open, hi_open;
    const char *const *choices;   /* RF_SET_ENUM / RF_SET_LIST: NULL-terminated         */
    const char *def;              /* default as JSON text; NULL: none                */
    /* The default is this training key's (rf_train_settings): prune's
     * finetune_epochs defaults to what epochs defaults to. */
    const char *def_from;
    const char *unit;             /* "steps", "samples", ... (docs); may be NULL     */
    const char *doc;              /* one line                                        */
    const struct rf_setting *sub; /* RF_SET_OBJ: the table of its keys               */
    const char *alias;            /* extra command-line spelling, e.g. "e"; NULL     */
    /* Only written into settings when another key has one of some values:
     * "mode=qat". NULL: always. */
    const char *when;
    /* Or only when this returns 1 for the settings (prune's method keys:
     * the method's descriptor says which it reads); when then documents it. */
    int (*applies)(const struct rf_setting *s, const cJSON *settings);
    /* The choices from a table elsewhere (the pruning methods, the kinds):
     * used when choices is NULL. */
    const char *const *(*choices_fn)(void);
    /* A check beyond type and bounds (a string's syntax: augment, normalize;
     * validation's integer counts), run after them: RF_OK, or an error
     * whose message (in ctx) the caller prefixes with the JSON path. */
    rf_status (*check)(rf_ctx *ctx, const cJSON *v);
    /* The default depends on other settings (validation: the dataset's):
     * a new value for settings o, NULL when it has none. `def` is then
     * NULL and the docs print "depends". */
    cJSON *(*def_of)(const struct rf_setting *s, const cJSON *o);
} rf_setting;

/* Tables end with an entry whose key is NULL. */
#define RF_SETTINGS_END {0}

/* The training keys: epochs, iterations, batch, optimizer, lr, momentum,
 * weight_decay, schedule, warmup, label_smoothing, clip_norm, eval_limit,
 * eval_every (docs/training.md). The same for job files, task settings and
 * the command line. */
extern const rf_setting rf_train_settings[];
/* The data preparation keys: validation, split_seed, normalize, pad_to
 * (docs/data.md): how every task that reads data turns its dataset into
 * training, validation and test splits (rf_data_open). Settings of every
 * kind that reads data; in job files at the top level and in experiments. */
extern const rf_setting rf_data_settings[];
/* A `best` selection of a pipeline (a stage's, a distillation teacher's
 * `teacher.best`): its keys {"by", "per"}, and the metrics it may rank by,
 * validation-split ones only (NULL-terminated; the test split never
 * selects) with, in the same order, 1 where smaller is better. */
extern const rf_setting rf_best_settings[];
extern const char *const rf_select_metric_names[];
extern const unsigned char rf_select_metric_lower[];

/* s's choices (choices, or choices_fn()); NULL: none. */
const char *const *rf_setting_choices(const rf_setting *s);
/* Finds key in tab (NULL if absent). */
const rf_setting *rf_setting_find(const rf_setting *tab, const char *key);
/* The entry of key in the first of n tables that has it. */
const rf_setting *rf_settings_lookup(const rf_setting *const *tabs, int n, const char *key);

/* Validates one value v of s. path names it in errors ("train.lr: 0 is
 * outside (0, 10]"); in_grid: a list is a grid axis (each element checked).
 * Errors are RF_ERR_JOB with the message in ctx. */
rf_status rf_setting_check(rf_ctx *ctx, const rf_setting *s, const cJSON *v, const char *path, int in_grid);
/* Validates object o against the union of n tables: unknown keys (with a
 * did-you-mean), duplicate keys, each value, required keys. */
rf_status rf_settings_check(rf_ctx *ctx, const cJSON *o, const rf_setting *const *tabs, int n, const char *path,
                            int in_grid);
/* The job-file error every check reports: RF_ERR_JOB with "PATH: message"
 * ("(top level)" for an empty path) in ctx. */
rf_status rf_settings_error(rf_ctx *ctx, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "a number", "a string", "a boolean", "null", "a list", "an object": what
 * a JSON value is, for errors (static). */
const char *rf_json_type_word(const cJSON *v);
/* Adds the default of every absent key of tab that has one (RF_SF_OPTIONAL
 * keys and keys whose `when` does not hold excepted). Returns 0 when out of
 * memory (o may then lack keys: do not use it). */
int rf_settings_fill(cJSON *o, const rf_setting *tab);
/* Whether s's `when` / `applies` condition holds in o (1 without one). */
int rf_setting_applies(const rf_setting *s, const cJSON *o);

/* The default of s as a new cJSON value (NULL: none, or out of memory). */
cJSON *rf_setting_default(const rf_setting *s);
/* The default of s in settings o (def_of when s has it, else
 * rf_setting_default). New value; NULL: none. */
cJSON *rf_setting_default_in(const rf_setting *s, const cJSON *o);

/* Readers: the value of key in settings when present (and of the right
 * type), else its table default (0, "" or 0 when the table has none). They
 * do not validate: rf_settings_check or the job did. */
double      rf_settings_num(const cJSON *settings, const rf_setting *tab, const char *key);
const char *rf_settings_str(const cJSON *settings, const rf_setting *tab, const char *key);
int         rf_settings_bool(const cJSON *settings, const rf_setting *tab, const char *key);

/* The dataset spec of a job file's dataset value: a string as it is, or
 * {"url": U, "sha256": H[, "format": F]} as "[F:]U#sha256=H" (a pinned URL,
 * raffle/data.h). Writes at most n bytes; 0 when v is neither or too long. */
int         rf_data_value_spec(const cJSON *v, char *buf, size_t n);
/* Damerau edit distance of two short strings (99 for strings > 64 bytes). */
int         rf_edit_distance(const char *a, const char *b);
/* The closest of the keys of n tables and of `words` (NULL-terminated, may
 * be NULL) to s, or NULL when none is close. */
const char *rf_settings_suggest(const char *s, const rf_setting *const *tabs, int n, const char *const *words);

/* "[0, 1)", "(0, 10]", "≥ 0", "one of a, b" ... of s into buf. */
void rf_setting_range(const rf_setting *s, char *buf, size_t n);
/* The default as documentation prints it ("60", "`adam`", "(required)",
 * "the default of `epochs` (10)") into buf. */
void rf_setting_default_text(const rf_setting *s, char *buf, size_t n);

/* Appends a markdown table of tab (| key | type | default | unit | meaning |)
 * to b. flag_names: keys spelled as command-line flags (`--weight-decay`). */
void rf_settings_markdown(rf_buf *b, const rf_setting *tab, int flag_names);

#ifdef __cplusplus
}
#endif
#endif
