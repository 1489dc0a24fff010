build-dev/src/compress/quant.o: src/compress/quant.c \
 include/raffle/quant.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/ckpt.h include/raffle/train.h \
 include/raffle/task.h include/raffle/kernels.h
include/raffle/quant.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/ckpt.h:
include/raffle/train.h:
include/raffle/task.h:
include/raffle/kernels.h:
