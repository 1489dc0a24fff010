build-dev/src/nn/layer_transformer.o: src/nn/layer_transformer.c \
 src/nn/product.h src/nn/layers.h include/raffle/nn.h \
 include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/kernels.h
src/nn/product.h:
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/kernels.h:
