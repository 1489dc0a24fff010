build-dev/src/nn/layer_linear.o: src/nn/layer_linear.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/kernels.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/kernels.h:
