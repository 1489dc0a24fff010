/* raffle job: a sweep's job file (JSON) validated against a schema and
 * expanded into a DAG of tasks (docs/jobs.md documents every field).
 *
 * Expansion: any scalar setting given as a list is a grid axis; each grid
 * point of an experiment becomes tasks through its kind's descriptor
 * (raffle/task.h rf_kind.expand: dense training -> prunes, lottery round r ->
 * r+1, teacher -> students, OFA teacher -> sparse -> transfer -> QAT). Each
 * task carries its canonical settings (keys sorted, printed by
 * cJSON_PrintUnformatted) and its id is a hash of those settings, of its
 * parents' ids and of the checkpoint format version, so identical work in two
 * experiments is one task and an edited job changes only the ids it touches
 * (raffle/plan.h).
 *
 * Orchestration only: nothing here does math or I/O policy beyond reading
 * the job file (CONTRIBUTING.md rule 9). */
#ifndef RAFFLE_JOB_H
#define RAFFLE_JOB_H

#include <stdint.h>
#include "raffle/core.h"
#include <cjson/cJSON.h>
#include "raffle/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The task kinds (rf_job_kind, RF_JOB_*) and their descriptors are in
 * raffle/task.h, the task records (rf_job_task) in raffle/plan.h. */
const char *rf_job_kind_name(int kind);   /* "train", ...; "?" if out of range */

typedef struct rf_job_limits {
    uint64_t memory_bytes; /* RLIMIT_AS of each task's child process */
    double   time_s;       /* wall-clock limit of one task attempt */
    int      retries;      /* extra attempts after a crash or timeout */
} rf_job_limits;

typedef struct rf_job {
    char          name[129];    /* store name: [A-Za-z0-9._-], not starting with '.' */
    char         *text;         /* the job file as submitted (owned, NUL-terminated) */
    size_t        text_len;
    rf_job_limits limits;
    int           threads;      /* compute threads of each task, the top-level engine.threads (0: the
                                 * worker's default, SLURM_CPUS_PER_TASK or 1); not a task setting */
    int           n_tasks;      /* tasks in topological order: parents before children */
    rf_job_task  *tasks;        /* owned */
    int32_t      *parents;      /* owned; task indices */
    char         *strings;      /* owned; settings strings back to back */
    size_t        strings_len;
    int           n_experiments;
    char        **exp_names;    /* owned; per experiment label */
    int           n_dedup;      /* tasks merged because two experiments asked for the same work */
    int32_t      *id_index;     /* owned; open-addressing table id -> task (rf_job_find) */
    size_t        id_index_cap; /* power of two */
    /* Pipelines whose selection waits for results: exp_deferred[e] = 1
     * when experiment e (a `best` stage, or any stage from one) is not
     * expanded yet because a task it selects among has not finished
     * (rf_job_facts). n_deferred counts them; 0: the job is complete. */
    int           n_deferred;
    unsigned char *exp_deferred; /* owned; n_experiments entries */
    int32_t       *exp_from;     /* owned; the experiment a stage starts from ("from"), -1: none */
    /* owned; {path: sha256} of every file the tasks read (model specs,
     * .npy and descriptor datasets), whose contents are in the ids; NULL
     * when they read none. A sweep records it in its store (inputs.json). */
    char         *inputs_json;
} rf_job;

/* ---- pipelines: what a `best` selection knows of finished tasks ---------------
 * A stage `"from": "prune", "best": {"by": "val_accuracy", "per": [...]}`
 * keeps, per group, the candidate with the best validation metric; that
 * needs the candidates' results, so expanding it is deferred until every
 * candidate has ended (docs/jobs.md). The caller says what it knows of a
 * task through rf_job_fact_fn: RF_FACT_DONE with the metric's value (NaN
 * when the task has none), RF_FACT_GONE (failed or skipped: never a
 * candidate), RF_FACT_WAIT (not ended yet: the stage stays deferred). */
typedef enum rf_fact { RF_FACT_WAIT = 0, RF_FACT_DONE = 1, RF_FACT_GONE = 2 } rf_fact;
typedef rf_fact (*rf_job_fact_fn)(void *ud, uint64_t id, const char *metric, double *value);
typedef struct rf_job_facts { rf_job_fact_fn fn; void *ud; } rf_job_facts;
/* The metrics a `best` selection may rank by: validation-split metrics only
 * (NULL-terminated, static); the test split never selects. */
const char *const *rf_job_select_metrics(void);
/* Facts from a JSON object {"<16-hex id>": {"state": "done"|"gone",
 * "<metric>": number}} (ud: the const cJSON *; absent ids wait): how ranks
 * other than 0 see what rank 0 read from the store. */
rf_fact rf_job_fact_json(void *ud, uint64_t id, const char *metric, double *value);
/* A fact source that also writes every answer into `log` in the form
 * rf_job_fact_json reads (inner borrowed; log a cJSON object, borrowed). */
typedef struct rf_job_fact_log { rf_job_facts inner; cJSON *log; } rf_job_fact_log;
rf_fact rf_job_fact_record(void *ud, uint64_t id, const char *metric, double *value);

/* Parses and validates a job; copies text. name_hint (may be NULL) names the
 * job when it has no "name" (e.g. the file's basename without .json).
 * Errors are RF_ERR_JOB with the JSON path in ctx ("experiments[2].sparsity[1]:
 * 1.3 is outside [0, 1)"). Returns a new job; free with rf_job_free. */
rf_status rf_job_parse(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, rf_job **out);
/* rf_job_parse with the files' digests pinned: pins (may be NULL) is a
 * JSON object {path: sha256} (a job's inputs_json) whose files are not
 * read; other files are. Ranks of one sweep and its report parse with the
 * digests the sweep's rank 0 hashed, so all see the same ids. */
rf_status rf_job_parse_pinned(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, const char *pins,
                              rf_job **out);
/* rf_job_parse_pinned with what is known of finished tasks (facts may be
 * NULL: nothing; every `best` stage is then deferred). */
rf_status rf_job_parse_facts(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, const char *pins,
                             const rf_job_facts *facts, rf_job **out);
/* Reads and parses a job file. */
rf_status rf_job_load(rf_ctx *ctx, const char *path, rf_job **out);
void      rf_job_free(rf_job *j);   /* accepts NULL */

/* Borrowed pointers into j. */
static inline const char *rf_job_settings(const rf_job *j, int i) { return j->strings + j->tasks[i].settings_off; }
static inline const int32_t *rf_job_parents(const rf_job *j, int i) { return j->parents + j->tasks[i].parent_off; }
/* Index of the task with this id, or -1 (a hash lookup). */
int  rf_job_find(const rf_job *j, uint64_t id);
/* Writes the 16-hex-digit id and a NUL into out. */
void rf_job_id_hex(uint64_t id, char out[17]);
/* Parses 16 hex digits; returns 0 on success. */
int  rf_job_id_parse(const char *s, uint64_t *id);

typedef struct rf_job_summary {
    int    n_tasks;
    int    per_kind[RF_JOB_KIND_COUNT_];
    int    longest_chain;   /* tasks on the longest dependency path */
    int    n_roots;         /* tasks with no parents */
    double est_seconds;     /* sum of task cost estimates (one core) */
    double est_critical_s;  /* cost along the most expensive path */
} rf_job_summary;
void rf_job_summarize(const rf_job *j, rf_job_summary *s);

/* Heights: out[i] = tasks on the longest path from i to a sink (1 for sinks).
 * out must hold n_tasks entries. Used as scheduling priority. */
void rf_job_heights(const rf_job *j, int32_t *out);

/* Edit distance helper used for did-you-mean (exposed for tests;
 * rf_edit_distance, raffle/settings.h). */
int rf_job_edit_distance(const char *a, const char *b);

/* ---- readable task labels (src/job/label.c) -----------------------------------
 * "experiment/method/key=value/.../seed=N": the experiment's name, the kind's
 * method label (rf_kind.label), then the settings that take more than one
 * value among the tasks of the same experiment and kind (the varied keys;
 * those whose value follows from the method label are left out), seed last.
 * Tasks whose labels would still be equal get " from " and their first
 * parent's label (its experiment left out when it is the same), then " #"
 * and 8 hex digits of their id. raffle status,
 * the sweep's log lines, the report and raffle find all print these. */
typedef struct rf_job_labels rf_job_labels;
/* Builds the labels of every task of j (borrowed: j must outlive them).
 * Returns a new object; free with rf_job_labels_free. */
rf_status   rf_job_labels_new(rf_ctx *ctx, const rf_job *j, rf_job_labels **out);
void        rf_job_labels_free(rf_job_labels *l);   /* accepts NULL */
/* Task i's label (borrowed from l); "" when l is NULL or i out of range. */
const char *rf_job_label(const rf_job_labels *l, int i);
enum { RF_LABEL_NO_EXPERIMENT = 1 };
/* Task i's label without the keys listed in omit (NULL-terminated, may be
 * NULL), in its own part and its " from " part; flags RF_LABEL_*. So
 * {"seed", NULL} names the group a seed average is over. Writes at most n
 * bytes into buf (NUL-terminated) and returns the full length. */
size_t      rf_job_label_format(const rf_job_labels *l, int i, const char *const *omit, unsigned flags, char *buf,
                                size_t n);
/* The settings keys of task i's group (experiment, kind), flattened with '.'
 * ("engine.conv"), in label order: k from 0 to rf_job_label_nkeys - 1.
 * flags gets RF_LABEL_KEY_VARIED (more than one value in the group) and
 * RF_LABEL_KEY_SHOWN (in the label). Borrowed; NULL when out of range. */
enum { RF_LABEL_KEY_VARIED = 1, RF_LABEL_KEY_SHOWN = 2 };
int         rf_job_label_nkeys(const rf_job_labels *l, int i);
const char *rf_job_label_key(const rf_job_labels *l, int i, int k, unsigned *flags);
/* The value at a flattened key ("engine.conv") of a settings object, or
 * NULL. Borrowed from settings. */
const cJSON *rf_job_setting_get(const cJSON *settings, const char *key);
/* raffle find: does task i (settings: its parsed settings, borrowed) have
 * key = value? key is a flattened settings key (numbers compare as numbers,
 * a list matches any member), or "experiment", "kind", "label", "id" (a
 * prefix of the hex id), or "method" (the settings' method, else the
 * kind's method label: "imp", "int8-ptq", "dense"). */
int         rf_job_task_match(const rf_job_labels *l, int i, const cJSON *settings, const char *key, const char *value);
/* Whether any task has settings key `key` (or it is one of the names
 * rf_job_task_match knows), and the closest known key to a misspelt one
 * (NULL: nothing close). Borrowed. */
int         rf_job_has_key(const rf_job_labels *l, const char *key);
const char *rf_job_key_suggest(const rf_job_labels *l, const char *key);

/* The settings tables of a job file's own keys (docs generation): the top
 * level, "limits", and the keys common to every experiment. */
const rf_setting *rf_job_top_settings(void);
const rf_setting *rf_job_limit_settings(void);
const rf_setting *rf_job_experiment_settings(void);

#ifdef __cplusplus
}
#endif
#endif
