/* Fuzz target: model spec JSON -> model (shape inference, size limits).
 * A small accepted model is also initialised and run forward and backward
 * on one zero sample, so a shape inference that disagrees with what a layer
 * really reads or writes shows up as an ASan report rather than as a silent
 * wrong answer. */
#include <stdlib.h>
#include <string.h>
#include "raffle/nn.h"

/* Forward/backward only on models this small, to keep executions fast. */
#define RUN_MAX_PARAMS (1u << 16)
#define RUN_MAX_INPUT  4096

static void run_once(rf_ctx *ctx, rf_model *m) {
    size_t in = (size_t)m->input.d[0] * (size_t)m->input.d[1] * (size_t)m->input.d[2];
    if (m->n_params > RUN_MAX_PARAMS || in == 0 || in > RUN_MAX_INPUT || m->n_layers == 0) return;
    if (rf_model_init(ctx, m, 1) != RF_OK) return;
    float *x = calloc(in, sizeof *x);
    size_t nout = m->layers[m->n_layers - 1].out_size;
    float *dl = calloc(nout ? nout : 1, sizeof *dl);
    const float *logits = NULL;
    if (x && dl && rf_model_forward(ctx, m, x, 1, 1, &logits) == RF_OK) {
        rf_model_zero_grad(m);
        (void)rf_model_backward(ctx, m, dl);
    }
    free(x);
    free(dl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    rf_model *m = NULL;
    if (rf_model_from_spec(&ctx, s, &m) == RF_OK) {
        run_once(&ctx, m);
        rf_model_free(m);
    }
    free(s);
    return 0;
}
