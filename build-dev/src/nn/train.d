build-dev/src/nn/train.o: src/nn/train.c include/raffle/train.h \
 include/raffle/core.h include/raffle/nn.h include/raffle/data.h \
 include/raffle/ckpt.h
include/raffle/train.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/ckpt.h:
