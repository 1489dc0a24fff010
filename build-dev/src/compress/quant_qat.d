build-dev/src/compress/quant_qat.o: src/compress/quant_qat.c \
 include/raffle/quant.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/ckpt.h include/raffle/train.h \
 include/raffle/task.h
include/raffle/quant.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/ckpt.h:
include/raffle/train.h:
include/raffle/task.h:
