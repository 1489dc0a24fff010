/* Losses over logits: softmax cross-entropy with optional label smoothing and
 * the Hinton et al. (2015) distillation loss. Both return the batch mean and
 * write d(mean loss)/d(logits).
 *
 * Numerics: every softmax is computed as exp(z - max z) / sum, and every log-
 * probability as (z - max z) - log(sum exp(z - max z)) (log-sum-exp), so no
 * exponent overflows for any finite logits. Per-sample sums accumulate in
 * double; the result is rounded to float once. */
#include "raffle/nn.h"

#include <math.h>

/* Log-softmax of z[0..k) scaled by 1/T into lp (double), returns nothing.
 * Writes p = softmax(z/T) into p if non-NULL. */
static void log_softmax_T(const float *z, int k, double T, double *lp, double *p) {
    double mx = z[0] / T;
    for (int j = 1; j < k; j++) if (z[j] / T > mx) mx = z[j] / T;
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp(z[j] / T - mx);
    double ls = log(s);
    for (int j = 0; j < k; j++) {
        lp[j] = z[j] / T - mx - ls;
        if (p) p[j] = exp(lp[j]);
    }
}

/* Label smoothing as in PyTorch's CrossEntropyLoss(label_smoothing=eps)
 * (Szegedy et al. 2016, Sec. 7): target q = (1 - eps) * onehot(y) + eps / K,
 * loss = -sum_k q_k log p_k, d loss / d z = p - q. */
float rf_loss_xent(const float *logits, const int32_t *labels, int batch, int classes,
                   float smoothing, float *dlogits) {
    if (batch <= 0 || classes <= 0) return 0.0f;
    double lp[classes], p[classes];
    const double eps = smoothing, off = eps / classes, inv_b = 1.0 / batch;
    double total = 0.0;
    for (int b = 0; b < batch; b++) {
        const float *z = logits + (size_t)b * classes;
        const int y = labels[b];
        log_softmax_T(z, classes, 1.0, lp, p);
        double l = 0.0;
        for (int j = 0; j < classes; j++) {
            double q = off + (j == y ? 1.0 - eps : 0.0);
            if (q != 0.0) l -= q * lp[j];
            if (dlogits) dlogits[(size_t)b * classes + j] = (float)((p[j] - q) * inv_b);
        }
        total += l;
    }
    return (float)(total * inv_b);
}

/* Distillation loss (Hinton, Vinyals, Dean 2015, Sec. 2):
 *   L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, p_s),
 * p^T = softmax(z / T). The T^2 factor keeps the soft term's gradient
 * magnitude independent of T: d/dz_s of T^2 * KL = T * (p_s^T - p_t^T).
 * The hard term's gradient is p_s - onehot(y). */
float rf_loss_distill(const float *student, const float *teacher, const int32_t *labels,
                      int batch, int classes, float T, float alpha, float *dlogits) {
    if (batch <= 0 || classes <= 0) return 0.0f;
    double lps[classes], ps[classes], lpt[classes], pt[classes], lp1[classes], p1[classes];
    const double t = T, a = alpha, inv_b = 1.0 / batch;
    double total = 0.0;
    for (int b = 0; b < batch; b++) {
        const float *zs = student + (size_t)b * classes, *zt = teacher + (size_t)b * classes;
        log_softmax_T(zs, classes, t, lps, ps);
        log_softmax_T(zt, classes, t, lpt, pt);
        log_softmax_T(zs, classes, 1.0, lp1, p1);
        double kl = 0.0;
        for (int j = 0; j < classes; j++)
            if (pt[j] > 0.0) kl += pt[j] * (lpt[j] - lps[j]);
        const int y = labels[b];
        double ce = -lp1[y];
        total += a * t * t * kl + (1.0 - a) * ce;
        if (dlogits)
            for (int j = 0; j < classes; j++) {
                double g = a * t * (ps[j] - pt[j]) + (1.0 - a) * (p1[j] - (j == y ? 1.0 : 0.0));
                dlogits[(size_t)b * classes + j] = (float)(g * inv_b);
            }
    }
    return (float)(total * inv_b);
}
