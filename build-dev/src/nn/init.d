build-dev/src/nn/init.o: src/nn/init.c src/nn/layers.h \
 include/raffle/nn.h include/raffle/core.h /usr/include/cjson/cJSON.h
src/nn/layers.h:
include/raffle/nn.h:
include/raffle/core.h:
/usr/include/cjson/cJSON.h:
