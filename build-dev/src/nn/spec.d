build-dev/src/nn/spec.o: src/nn/spec.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
