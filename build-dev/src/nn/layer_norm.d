build-dev/src/nn/layer_norm.o: src/nn/layer_norm.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
