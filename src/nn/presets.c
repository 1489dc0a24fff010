/* Built-in model specs. Shapes are for 28×28×1 inputs (MNIST, Fashion-MNIST)
 * and 10 classes; docs/nn.md lists parameter counts cross-checked against
 * PyTorch.
 *  - lenet-300-100, conv-2/4/6: Frankle & Carbin 2019, Fig. 2 (convs 3×3,
 *    padding 1, pairs followed by 2×2 max-pool; fc 256, 256, 10), Gaussian
 *    Glorot initialisation as in the paper.
 *  - lenet-5: LeCun et al. 1998 with ReLU and max-pool, padding 2 on conv1 so a
 *    28×28 input gives the original 32×32 geometry; He initialisation.
 *  - lenet-5-caffe: Caffe's LeNet, Deep Compression's LeNet-5 (below).
 *  - mlp-1200x2 / mlp-800x2: Hinton et al. 2015 §3 teacher (dropout 0.2 on the
 *    input, 0.5 on hidden units, as in Hinton et al. 2012) and student.
 *  - vit-tiny: Dosovitskiy et al. 2021 shape at patch 7, width 64, 4 pre-norm
 *    blocks of 4 heads, MLP 256, GELU, class token, learned position
 *    embedding, final layer norm, linear head; trunc-normal(0.02) init.
 * The CIFAR nets below default to 32×32×3 inputs; rf_model_create_for
 * rebuilds any preset for another input shape (28×28×1 included):
 *  - resnet-20/32/56: He et al. 2016 Sec. 4.2, 3 stages of n basic blocks
 *    (16/32/64 channels, n = 3/5/9), option-A shortcuts, global average
 *    pooling, linear head; layer names as the PyTorch reference
 *    (akamaster/pytorch_resnet_cifar10: conv1, bn1, layerS.I.conv1, …,
 *    linear), Kaiming-normal init.
 *  - resnet-18: the CIFAR variant (kuangliu/pytorch-cifar, Synaptic-Flow):
 *    3×3 stem without max-pool, 4 stages of 2 basic blocks (64-512),
 *    option-B projections (layerS.0.shortcut.0 conv 1×1, .1 batch norm).
 *  - vgg-11/16/19: open_lth's and Synaptic-Flow's CIFAR VGGs with batch
 *    norm (conv 3×3 with bias, BN, ReLU; 2×2 max-pools) and one 512→10
 *    linear head, open_lth's names (layers.I.conv, layers.I.bn, fc). Their
 *    AvgPool2d(2) over the final 2×2 map is global average pooling here,
 *    the same on 32×32 and what makes 28×28 (final map 1×1) work. */
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

/* CIFAR ResNets. A basic block P (a string such as "layer2.0") reads PREV:
 * conv 3×3 (stride ST) - BN - ReLU - conv 3×3 - BN, added to the shortcut
 * and passed through ReLU; its output is P ".relu2". */
#define RN_CONV(N, IN, C, K, ST, PAD) \
    "{\"type\":\"conv2d\",\"name\":\"" N "\",\"inputs\":\"" IN "\",\"out\":" #C ",\"kernel\":" #K \
    ",\"stride\":" #ST ",\"padding\":" #PAD ",\"bias\":0},"
#define RN_BN(N) "{\"type\":\"batchnorm\",\"name\":\"" N "\"},"
#define RN_RELU(N) "{\"type\":\"relu\",\"name\":\"" N "\"},"
#define RN_BRANCH(P, C, ST, PREV) \
    RN_CONV(P ".conv1", PREV, C, 3, ST, 1) RN_BN(P ".bn1") RN_RELU(P ".relu1") \
    RN_CONV(P ".conv2", P ".relu1", C, 3, 1, 1) RN_BN(P ".bn2")
#define RN_ADD(P, SKIP, OPT) \
    "{\"type\":\"add\",\"name\":\"" P ".add\",\"inputs\":[\"" P ".bn2\",\"" SKIP "\"]" OPT "}," RN_RELU(P ".relu2")
/* identity shortcut; option A (stride 2, zero-padded channels); option B (1×1 projection + BN) */
#define RN_ID(P, C, PREV) RN_BRANCH(P, C, 1, PREV) RN_ADD(P, PREV, "")
#define RN_A(P, C, PREV) RN_BRANCH(P, C, 2, PREV) RN_ADD(P, PREV, ",\"shortcut\":\"A\"")
#define RN_B(P, C, PREV) \
    RN_BRANCH(P, C, 2, PREV) RN_CONV(P ".shortcut.0", PREV, C, 1, 2, 0) RN_BN(P ".shortcut.1") \
    RN_ADD(P, P ".shortcut.1", "")
/* block I of stage S after block J */
#define RN_NEXT(S, I, J, C) RN_ID("layer" #S "." #I, C, "layer" #S "." #J ".relu2")
#define RN_STAGE3(S, C, FIRST, PREV) FIRST("layer" #S ".0", C, PREV) RN_NEXT(S, 1, 0, C) RN_NEXT(S, 2, 1, C)
#define RN_STAGE5(S, C, FIRST, PREV) RN_STAGE3(S, C, FIRST, PREV) RN_NEXT(S, 3, 2, C) RN_NEXT(S, 4, 3, C)
#define RN_STAGE9(S, C, FIRST, PREV) \
    RN_STAGE5(S, C, FIRST, PREV) RN_NEXT(S, 5, 4, C) RN_NEXT(S, 6, 5, C) RN_NEXT(S, 7, 6, C) RN_NEXT(S, 8, 7, C)
#define RN_STEM(C) RN_CONV("conv1", "input", C, 3, 1, 1) RN_BN("bn1") RN_RELU("relu")
#define RN_HEAD "{\"type\":\"gap\",\"name\":\"avgpool\"},{\"type\":\"linear\",\"name\":\"linear\",\"out\":10}"
#define CIFAR_TOP "{\"input\":[3,32,32],\"classes\":10,\"init\":\"kaiming_normal\",\"layers\":["
#define RN_CIFAR(STAGE, N) \
    CIFAR_TOP RN_STEM(16) STAGE(1, 16, RN_ID, "relu") STAGE(2, 32, RN_A, "layer1." #N ".relu2") \
    STAGE(3, 64, RN_A, "layer2." #N ".relu2") RN_HEAD "]}"

/* CIFAR VGG with batch norm: plan entry I is a conv module or a max-pool. */
#define VC(I, C) \
    "{\"type\":\"conv2d\",\"name\":\"layers." #I ".conv\",\"out\":" #C ",\"kernel\":3,\"padding\":1}," \
    "{\"type\":\"batchnorm\",\"name\":\"layers." #I ".bn\"},{\"type\":\"relu\",\"name\":\"layers." #I ".relu\"},"
#define VM(I) "{\"type\":\"maxpool\",\"name\":\"layers." #I "\",\"kernel\":2},"
#define VGG_HEAD "{\"type\":\"gap\",\"name\":\"avgpool\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":10}"

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
    /* Caffe's LeNet (examples/mnist/lenet_train_test.prototxt), the LeNet-5
     * of Deep Compression (Han et al. 2016, Table 3: 431K weights): conv 20
     * 5×5, max-pool, conv 50 5×5, max-pool, ip1 500 + ReLU, ip2 10; no
     * padding and, as in Caffe, no ReLU after the convolutions. Caffe's
     * ip1/ip2 are fc1/fc2 here; Xavier-like (Glorot) initialisation. */
    {"lenet-5-caffe",
     "{\"input\":[1,28,28],\"classes\":10,\"init\":\"glorot_normal\",\"layers\":["
     "{\"type\":\"conv2d\",\"name\":\"conv1\",\"out\":20,\"kernel\":5},{\"type\":\"maxpool\",\"kernel\":2},"
     "{\"type\":\"conv2d\",\"name\":\"conv2\",\"out\":50,\"kernel\":5},{\"type\":\"maxpool\",\"kernel\":2},"
     "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc1\",\"out\":500},{\"type\":\"relu\"},"
     "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}"},
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
    {"resnet-20", RN_CIFAR(RN_STAGE3, 2)},
    {"resnet-32", RN_CIFAR(RN_STAGE5, 4)},
    {"resnet-56", RN_CIFAR(RN_STAGE9, 8)},
    {"resnet-18",
     CIFAR_TOP RN_STEM(64) RN_ID("layer1.0", 64, "relu") RN_ID("layer1.1", 64, "layer1.0.relu2")
     RN_B("layer2.0", 128, "layer1.1.relu2") RN_ID("layer2.1", 128, "layer2.0.relu2")
     RN_B("layer3.0", 256, "layer2.1.relu2") RN_ID("layer3.1", 256, "layer3.0.relu2")
     RN_B("layer4.0", 512, "layer3.1.relu2") RN_ID("layer4.1", 512, "layer4.0.relu2") RN_HEAD "]}"},
    {"vgg-11",
     CIFAR_TOP VC(0, 64) VM(1) VC(2, 128) VM(3) VC(4, 256) VC(5, 256) VM(6) VC(7, 512) VC(8, 512) VM(9)
     VC(10, 512) VC(11, 512) VGG_HEAD "]}"},
    {"vgg-16",
     CIFAR_TOP VC(0, 64) VC(1, 64) VM(2) VC(3, 128) VC(4, 128) VM(5) VC(6, 256) VC(7, 256) VC(8, 256) VM(9)
     VC(10, 512) VC(11, 512) VC(12, 512) VM(13) VC(14, 512) VC(15, 512) VC(16, 512) VGG_HEAD "]}"},
    {"vgg-19",
     CIFAR_TOP VC(0, 64) VC(1, 64) VM(2) VC(3, 128) VC(4, 128) VM(5) VC(6, 256) VC(7, 256) VC(8, 256) VC(9, 256)
     VM(10) VC(11, 512) VC(12, 512) VC(13, 512) VC(14, 512) VM(15) VC(16, 512) VC(17, 512) VC(18, 512) VC(19, 512)
     VGG_HEAD "]}"},
};

const char *rf_model_preset(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) return presets[i].spec;
    return NULL;
}

const char *rf_model_preset_names(void) {
    return "lenet-300-100,conv-2,conv-4,conv-6,lenet-5,lenet-5-caffe,mlp-1200x2,mlp-800x2,vit-tiny,resnet-20,resnet-32,resnet-56,"
           "resnet-18,vgg-11,vgg-16,vgg-19";
}

/* The preset's spec with its input shape and class count replaced: every
 * layer infers its shape from the input, so only the input and the
 * classifier's width (the last layer, linear in every preset) change. */
static rf_status preset_for(rf_ctx *ctx, const char *spec, int c, int h, int w, int min_classes, char **out) {
    *out = NULL;
    cJSON *root = cJSON_Parse(spec);
    cJSON *in = cJSON_CreateIntArray((const int[]){c, h, w}, 3);
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    cJSON *last = layers ? cJSON_GetArrayItem(layers, cJSON_GetArraySize(layers) - 1) : NULL;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "classes");
    int ok = root && in && last && cJSON_IsNumber(k) && cJSON_ReplaceItemInObjectCaseSensitive(root, "input", in);
    if (!ok) cJSON_Delete(in);
    if (ok && min_classes > k->valueint) {
        ok = cJSON_ReplaceItemInObjectCaseSensitive(root, "classes", cJSON_CreateNumber(min_classes)) &&
             cJSON_ReplaceItemInObjectCaseSensitive(last, "out", cJSON_CreateNumber(min_classes));
    }
    char *txt = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (txt) *out = rf_strdup(txt);
    cJSON_free(txt);
    return *out ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "model: out of memory");
}

rf_status rf_model_create_for(rf_ctx *ctx, const char *name_or_path, int c, int h, int w, int min_classes,
                              rf_model **out) {
    *out = NULL;
    if (c < 1 || h < 1 || w < 1) return rf_error(ctx, RF_ERR_INVALID, "model: input shape %dx%dx%d", c, h, w);
    const char *preset = rf_model_preset(name_or_path);
    if (!preset) {
        RF_TRY(rf_model_create(ctx, name_or_path, out));
        const rf_shape3 s = (*out)->input;
        if (s.d[0] == c && s.d[1] == h && s.d[2] == w) return RF_OK;
        rf_model_free(*out);
        *out = NULL;
        return rf_error(ctx, RF_ERR_SHAPE, "%s: the spec takes %dx%dx%d inputs, the data has %dx%dx%d", name_or_path,
                        s.d[0], s.d[1], s.d[2], c, h, w);
    }
    char *spec;
    RF_TRY(preset_for(ctx, preset, c, h, w, min_classes, &spec));
    rf_status st = rf_model_from_spec(ctx, spec, out);
    rf_free(spec);
    if (st) rf_error_prefix(ctx, "preset %s for %dx%dx%d inputs", name_or_path, c, h, w);
    return st;
}
