/* Built-in model specs. Shapes are for 28×28×1 inputs (MNIST, Fashion-MNIST)
 * and 10 classes; docs/nn.md lists parameter counts cross-checked against
 * PyTorch.
 *  - lenet-300-100, conv-2/4/6: Frankle & Carbin 2019, Fig. 2 (convs 3×3,
 *    padding 1, pairs followed by 2×2 max-pool; fc 256, 256, 10), Gaussian
 *    Glorot initialisation as in the paper.
 *  - lenet-5: LeCun et al. 1998 with ReLU and max-pool, padding 2 on conv1 so a
 *    28×28 input gives the original 32×32 geometry; He initialisation.
 *  - mlp-1200x2 / mlp-800x2: Hinton et al. 2015 §3 teacher (dropout 0.2 on the
 *    input, 0.5 on hidden units, as in Hinton et al. 2012) and student.
 *  - vit-tiny: Dosovitskiy et al. 2021 shape at patch 7, width 64, 4 pre-norm
 *    blocks of 4 heads, MLP 256, GELU, class token, learned position
 *    embedding, final layer norm, linear head; trunc-normal(0.02) init. */
#include "nn/layers.h"

#include <string.h>

#define FC_HEAD \
    "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc1\",\"out\":256},{\"type\":\"relu\"}," \
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":256},{\"type\":\"relu\"}," \
    "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}"
#define CONV_PAIR(a, b, ch) \
    "{\"type\":\"conv2d\",\"name\":\"conv" #a "\",\"out\":" #ch ",\"kernel\":3,\"padding\":1},{\"type\":\"relu\"}," \
    "{\"type\":\"conv2d\",\"name\":\"conv" #b "\",\"out\":" #ch ",\"kernel\":3,\"padding\":1},{\"type\":\"relu\"}," \
    "{\"type\":\"maxpool\",\"kernel\":2},"
#define VIT_BLOCK(i) "{\"type\":\"transformer\",\"name\":\"blocks." #i "\",\"heads\":4,\"mlp\":256,\"eps\":1e-6},"

static const struct { const char *name, *spec; } presets[] = {
    {"lenet-300-100",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"glorot_normal\",\"layers\":["
     "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc1\",\"out\":300},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":100},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}"},
    {"conv-2",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"glorot_normal\",\"layers\":[" CONV_PAIR(1, 2, 64) FC_HEAD "]}"},
    {"conv-4",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"glorot_normal\",\"layers\":[" CONV_PAIR(1, 2, 64)
     CONV_PAIR(3, 4, 128) FC_HEAD "]}"},
    {"conv-6",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"glorot_normal\",\"layers\":[" CONV_PAIR(1, 2, 64)
     CONV_PAIR(3, 4, 128) CONV_PAIR(5, 6, 256) FC_HEAD "]}"},
    {"lenet-5",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"kaiming_normal\",\"layers\":["
     "{\"type\":\"conv2d\",\"name\":\"conv1\",\"out\":6,\"kernel\":5,\"padding\":2},{\"type\":\"relu\"},"
     "{\"type\":\"maxpool\",\"kernel\":2},"
     "{\"type\":\"conv2d\",\"name\":\"conv2\",\"out\":16,\"kernel\":5},{\"type\":\"relu\"},"
     "{\"type\":\"maxpool\",\"kernel\":2},{\"type\":\"flatten\"},"
     "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":120},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":84},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}"},
    {"mlp-1200x2",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"kaiming_normal\",\"layers\":["
     "{\"type\":\"flatten\"},{\"type\":\"dropout\",\"p\":0.2},"
     "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":1200},{\"type\":\"relu\"},{\"type\":\"dropout\",\"p\":0.5},"
     "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":1200},{\"type\":\"relu\"},{\"type\":\"dropout\",\"p\":0.5},"
     "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}"},
    {"mlp-800x2",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"kaiming_normal\",\"layers\":["
     "{\"type\":\"flatten\"},"
     "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":800},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":800},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}"},
    {"vit-tiny",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"trunc_normal\",\"layers\":["
     "{\"type\":\"patch_embed\",\"name\":\"patch_embed\",\"patch\":7,\"dim\":64,\"cls\":1,\"pos\":1},"
     VIT_BLOCK(0) VIT_BLOCK(1) VIT_BLOCK(2) VIT_BLOCK(3)
     "{\"type\":\"layernorm\",\"name\":\"norm\",\"eps\":1e-6},{\"type\":\"cls_pool\"},"
     "{\"type\":\"linear\",\"name\":\"head\",\"out\":10}]}"},
};

const char *rf_model_preset(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) return presets[i].spec;
    return NULL;
}

const char *rf_model_preset_names(void) {
    return "lenet-300-100,conv-2,conv-4,conv-6,lenet-5,mlp-1200x2,mlp-800x2,vit-tiny";
}
