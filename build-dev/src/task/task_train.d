build-dev/src/task/task_train.o: src/task/task_train.c \
 include/raffle/task.h include/raffle/core.h include/raffle/data.h \
 include/raffle/nn.h include/raffle/train.h include/raffle/ckpt.h
include/raffle/task.h:
include/raffle/core.h:
include/raffle/data.h:
include/raffle/nn.h:
include/raffle/train.h:
include/raffle/ckpt.h:
