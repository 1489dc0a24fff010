build-dev/src/nn/model.o: src/nn/model.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h \
 include/raffle/kernels.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
include/raffle/kernels.h:
