build-dev/src/io/model_io.o: src/io/model_io.c include/raffle/train.h \
 include/raffle/core.h include/raffle/nn.h include/raffle/data.h \
 include/raffle/ckpt.h src/io/model_names.h
include/raffle/train.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/ckpt.h:
src/io/model_names.h:
