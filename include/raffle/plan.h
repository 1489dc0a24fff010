/* raffle plan: building a job's task DAG, the toolkit of the kinds'
 * expansions (rf_kind.expand, raffle/task.h).
 *
 * An expansion turns one grid point of an experiment (rf_point) into tasks
 * with parents: rf_plan_add(plan, kind, settings, parents). Each task's
 * settings are completed with its kind's defaults (rf_kind_complete),
 * canonicalised (keys sorted recursively, cJSON_PrintUnformatted) and its
 * id is FNV-1a-64 over the format versions (rf_plan_id_tag) + settings +
 * "\n<key>:<sha256>" of every file the settings name (rf_inputs) +
 * "\n<parent id>"..., the same idea as open_lth naming a run by a hash of
 * its hyperparameters: equal ids are merged, so shared dense models run
 * once, and an edited spec or dataset file is new work (issue 19, defect 3).
 *
 * Orchestration only: nothing here computes or does I/O (CONTRIBUTING.md rule 9).
 * src/job owns the plan of a job (rf_job takes its arrays). */
#ifndef RAFFLE_PLAN_H
#define RAFFLE_PLAN_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One task: compact (ids and indices, no pointers to per-task heap objects
 * except the settings string) so 100,000-task sweeps stay small. */
typedef struct rf_job_task {
    uint64_t id;           /* hash of format versions + canonical settings + file contents + parent ids */
    uint32_t parent_off;   /* first parent in rf_job.parents */
    uint16_t n_parents;
    uint8_t  kind;         /* rf_job_kind */
    uint8_t  pad_;
    uint32_t exp;          /* index of the experiment that first produced it */
    uint32_t settings_off; /* offset of its NUL-terminated settings in rf_job.strings */
    float    cost;         /* estimated seconds on one core (rough; for ETA/summary) */
} rf_job_task;

/* One grid point of an experiment, everything resolved. */
struct rf_point {
    const cJSON *x;        /* the concrete experiment object (its defaults filled) */
    const cJSON *train;    /* its training settings: top-level `train` overlaid by the experiment's */
    const char  *data;
    const cJSON *model;
    double       seed;
    const cJSON *engine;   /* the job's "engine" object (NULL: none) */
    /* The data preparation keys (rf_data_settings: validation, split_seed,
     * normalize, pad_to) given at the top level overlaid by the
     * experiment's; every task of the point gets them (NULL: none given). */
    const cJSON *prep;
    /* Pipelines (docs/jobs.md "Composing pipelines"): the task of an
     * earlier experiment this point starts from (its model is the one the
     * kind continues: prune prunes it, quantize quantizes it, distill's
     * student starts from it), -1 when the point starts from scratch; and
     * that task's settings (borrowed; NULL when from < 0). */
    int32_t      from;
    const cJSON *from_settings;
    /* A teacher named by an earlier experiment (distill's `teacher.from`):
     * the tasks its selection kept, in order (borrowed); n_teachers < 0:
     * the experiment has no `teacher.from`. The kind picks among them. */
    const int32_t *teachers;
    int          n_teachers;
};

/* The version of what a task computes from its settings (kernels, training
 * loop, metrics): bump it when a change alters the results of unchanged
 * settings, and every task id changes, so no store reuses a result the
 * new code would not reproduce. With the checkpoint format's version
 * (RF_CKPT_VERSION) it is part of every id. */
#define RF_ENGINE_FORMAT_VERSION 1
/* The versions' part of an id's hashed text into buf (n bytes): returns its
 * length. "rckpt-v<ckpt>\n", then "engine-v<engine>\n" when engine > 1
 * (version 1 is implicit: ids published before it was a version stay). */
int       rf_plan_id_tag(int ckpt_version, int engine_version, char *buf, size_t n);

/* ---- the files a task reads (src/task/inputs.c) ---------------------------------
 * A digest cache: each file is read and hashed (SHA-256) once. */
typedef struct rf_inputs rf_inputs;
rf_inputs *rf_inputs_new(void);            /* new; free with rf_inputs_free (NULL: out of memory) */
void      rf_inputs_free(rf_inputs *in);   /* accepts NULL */
/* Mixes into *h "\n<key>:<sha256>" of every file settings (canonical, of
 * kind k; borrowed) name: each key of type model that is not a preset, each
 * dataset's files (rf_data_spec_files). A file that cannot be read is an
 * error naming the key and the file. */
rf_status rf_inputs_hash(rf_ctx *ctx, rf_inputs *in, const rf_kind *k, const cJSON *settings, uint64_t *h);
/* Pins path to a digest (64 lowercase hex digits) without reading it; a
 * JSON object {path: digest, ...} pins each (what a sweep recorded in its
 * store's inputs.json: the report finds the sweep's ids without the files). */
rf_status rf_inputs_pin(rf_ctx *ctx, rf_inputs *in, const char *path, const char *sha256_hex);
rf_status rf_inputs_pin_json(rf_ctx *ctx, rf_inputs *in, const char *text, size_t n);
/* {path: digest} of every file hashed or pinned, unformatted JSON: a new
 * string (rf_free), NULL when there is none (or out of memory). */
char     *rf_inputs_json(const rf_inputs *in);
/* Whether path has a digest in in (hashed or pinned); in may be NULL. */
int       rf_inputs_has(const rf_inputs *in, const char *path);
/* How many files were read and hashed (not pinned) so far. */
int       rf_inputs_reads(const rf_inputs *in);

/* A new empty plan; errors go to ctx (borrowed). Free with rf_plan_free. */
rf_plan  *rf_plan_new(rf_ctx *ctx);
void      rf_plan_free(rf_plan *p);   /* accepts NULL */
rf_ctx   *rf_plan_ctx(rf_plan *p);
/* Sets the experiment index recorded in the tasks added next. */
void      rf_plan_set_experiment(rf_plan *p, uint32_t exp);
/* Ids of the tasks added next include the contents of the files they name,
 * through in (borrowed; NULL: they do not). */
void      rf_plan_set_inputs(rf_plan *p, rf_inputs *in);

/* Adds a task of kind `kind` built from `settings` (consumed: completed
 * with the kind's defaults, canonicalised) with the given parents (indices
 * returned by earlier calls); returns its index (an existing one when the
 * same work was already added), or -1 with ctx set (out of memory, the
 * task cap). */
int32_t   rf_plan_add(rf_plan *p, int kind, cJSON *settings, const int32_t *parents, int n_parents, double cost);
/* The task a dense model of pt comes from: kind "train" with
 * rf_plan_settings(pt, data, model, train). */
int32_t   rf_plan_dense(rf_plan *p, const rf_point *pt, const char *data, const cJSON *model, const cJSON *train);

/* The model a point's stage continues: pt->from when the point starts from
 * an earlier experiment's task, else a new dense training task of pt
 * (rf_plan_dense with `train`). Returns its index or -1 with ctx set. */
int32_t   rf_plan_start(rf_plan *p, const rf_point *pt, const cJSON *train);

/* What the expansions added: every index rf_plan_add returned since the
 * last rf_plan_set_experiment (merged duplicates included), in order; the
 * job reads them to know an experiment's outputs. Borrowed; valid until the
 * next rf_plan_add. */
int       rf_plan_recorded(const rf_plan *p, const int32_t **idx);
/* Task i of the plan (borrowed; valid until the next rf_plan_add), its
 * parents and its canonical settings string. */
const rf_job_task *rf_plan_task(const rf_plan *p, int32_t i);
int               rf_plan_count(const rf_plan *p);
const int32_t    *rf_plan_parents(const rf_plan *p, int32_t i);
const char       *rf_plan_task_settings(const rf_plan *p, int32_t i);

/* The common settings of a model-producing task: data, model, seed, the
 * job's engine object, the point's data preparation keys, and the keys of
 * `train` (may be NULL) at the top level. Returns a new object, NULL when
 * out of memory. */
cJSON    *rf_plan_settings(const rf_point *pt, const char *data, const cJSON *model, const cJSON *train);
/* base overlaid key by key with over (may be NULL). Returns new, or NULL. */
cJSON    *rf_plan_overlay(const cJSON *base, const cJSON *over);
/* Copies the listed keys (NULL-terminated) of src that exist into dst.
 * Returns 0 when out of memory. */
int       rf_plan_copy_keys(cJSON *dst, const cJSON *src, const char *const *keys);
/* Adds key/value to o; v is consumed (freed when it cannot be added). 0:
 * out of memory. */
int       rf_plan_put(cJSON *o, const char *key, cJSON *v);
/* Number at key of o (0 if absent). */
double    rf_plan_num(const cJSON *o, const char *key);
/* Sets RF_ERR_NOMEM on the plan's ctx, frees s (may be NULL), returns -1. */
int       rf_plan_nomem(rf_plan *p, cJSON *s);

/* Rough cost of training with `train` on data and model, in seconds on one
 * core: samples seen times a per-sample time measured for PyTorch on this
 * machine (REFERENCES.md). For the DAG summary and the ETA only. */
double    rf_plan_train_cost(const cJSON *train, const char *data, const cJSON *model);

/* Hands the built arrays over (the caller frees them with rf_free) and
 * empties the plan. */
void      rf_plan_take(rf_plan *p, rf_job_task **tasks, int *n_tasks, int32_t **parents, char **strings,
                       size_t *strings_len, int32_t **id_index, size_t *id_index_cap, int *n_dedup);
/* The index of the task with this id in a plan's id index, or -1. */
int       rf_plan_index_find(const int32_t *index, size_t cap, const rf_job_task *tasks, uint64_t id);

#ifdef __cplusplus
}
#endif
#endif
