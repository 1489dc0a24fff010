/* The table of pruning methods (raffle/prune.h rf_prune_method_desc): the
 * one list of them. Each descriptor lives in the file that implements the
 * method; adding a method is that file and one line here (its entry, with
 * the extern beside it). Positions of the built-in methods are the
 * rf_prune_method values; a test checks the names at those positions. */
#include "raffle/prune.h"

#include <pthread.h>
#include <string.h>

extern const rf_prune_method_desc rf_prune_method_magnitude, rf_prune_method_random, rf_prune_method_obd,
    rf_prune_method_snip, rf_prune_method_grasp, rf_prune_method_synflow;
extern const rf_prune_method_desc rf_prune_method_taylor;
extern const rf_prune_method_desc rf_prune_method_filter_l1, rf_prune_method_slimming, rf_prune_method_neuron_l1,
    rf_prune_method_head;

static const rf_prune_method_desc *const methods[] = {
    [RF_PRUNE_MAGNITUDE] = &rf_prune_method_magnitude,
    [RF_PRUNE_RANDOM] = &rf_prune_method_random,
    [RF_PRUNE_OBD] = &rf_prune_method_obd,
    [RF_PRUNE_SNIP] = &rf_prune_method_snip,
    [RF_PRUNE_GRASP] = &rf_prune_method_grasp,
    [RF_PRUNE_SYNFLOW] = &rf_prune_method_synflow,
    &rf_prune_method_taylor,
    &rf_prune_method_filter_l1,
    &rf_prune_method_slimming,
    &rf_prune_method_neuron_l1,
    &rf_prune_method_head,
};
#define N_METHODS ((int)(sizeof methods / sizeof methods[0]))
_Static_assert(sizeof methods / sizeof methods[0] > RF_PRUNE_SYNFLOW, "the named methods must be in the table");

int rf_prune_method_count(void) { return N_METHODS; }

const rf_prune_method_desc *rf_prune_method_get(int m) { return m >= 0 && m < N_METHODS ? methods[m] : NULL; }

const char *rf_prune_method_name(int m) { return m >= 0 && m < N_METHODS ? methods[m]->name : "?"; }

int rf_prune_method_from_name(const char *name) {
    for (int i = 0; name && i < N_METHODS; i++)
        if (strcmp(name, methods[i]->name) == 0) return i;
    return -1;
}

static const char *names_list[N_METHODS + 1];
static char names_csv[512];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_init(void) {
    size_t k = 0;
    for (int i = 0; i < N_METHODS; i++) {
        names_list[i] = methods[i]->name;
        size_t l = strlen(methods[i]->name);
        if (k + l + 2 > sizeof names_csv) continue;
        if (i) names_csv[k++] = ',';
        memcpy(names_csv + k, methods[i]->name, l);
        k += l;
    }
    names_list[N_METHODS] = NULL;
    names_csv[k] = '\0';
}

const char *const *rf_prune_method_list(void) {
    pthread_once(&names_once, names_init);
    return names_list;
}

const char *rf_prune_method_names(void) {
    pthread_once(&names_once, names_init);
    return names_csv;
}

int rf_prune_method_prunes_highest(int m) {
    const rf_prune_method_desc *d = rf_prune_method_get(m);
    return d && (d->flags & RF_PM_HIGHEST);
}

int rf_prune_method_reads(int m, const char *key) {
    const rf_prune_method_desc *d = rf_prune_method_get(m);
    for (const char *const *k = d ? d->keys : NULL; k && *k; k++)
        if (strcmp(*k, key) == 0) return 1;
    return 0;
}
