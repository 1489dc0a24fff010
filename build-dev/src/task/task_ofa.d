build-dev/src/task/task_ofa.o: src/task/task_ofa.c \
 include/raffle/distill.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/train.h include/raffle/ckpt.h \
 include/raffle/task.h include/raffle/prune.h include/raffle/quant.h
include/raffle/distill.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/train.h:
include/raffle/ckpt.h:
include/raffle/task.h:
include/raffle/prune.h:
include/raffle/quant.h:
