build-dev/src/task/task_quant.o: src/task/task_quant.c \
 include/raffle/quant.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/ckpt.h include/raffle/train.h \
 include/raffle/task.h include/raffle/distill.h include/raffle/prune.h
include/raffle/quant.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/ckpt.h:
include/raffle/train.h:
include/raffle/task.h:
include/raffle/distill.h:
include/raffle/prune.h:
