build-dev/src/nn/presets.o: src/nn/presets.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
