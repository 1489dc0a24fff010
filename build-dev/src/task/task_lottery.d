build-dev/src/task/task_lottery.o: src/task/task_lottery.c \
 include/raffle/prune.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/train.h include/raffle/ckpt.h \
 include/raffle/task.h
include/raffle/prune.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/train.h:
include/raffle/ckpt.h:
include/raffle/task.h:
