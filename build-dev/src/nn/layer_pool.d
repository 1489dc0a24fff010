build-dev/src/nn/layer_pool.o: src/nn/layer_pool.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/kernels.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/kernels.h:
