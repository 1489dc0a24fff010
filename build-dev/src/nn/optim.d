build-dev/src/nn/optim.o: src/nn/optim.c include/raffle/nn.h \
 include/raffle/core.h include/raffle/train.h include/raffle/data.h \
 include/raffle/ckpt.h include/raffle/kernels.h
include/raffle/nn.h:
include/raffle/core.h:
include/raffle/train.h:
include/raffle/data.h:
include/raffle/ckpt.h:
include/raffle/kernels.h:
