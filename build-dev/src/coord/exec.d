build-dev/src/coord/exec.o: src/coord/exec.c src/coord/coord_internal.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 include/raffle/coord.h include/raffle/core.h include/raffle/job.h \
 include/raffle/task.h include/raffle/data.h include/raffle/nn.h \
 include/raffle/train.h include/raffle/ckpt.h
src/coord/coord_internal.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
include/raffle/coord.h:
include/raffle/core.h:
include/raffle/job.h:
include/raffle/task.h:
include/raffle/data.h:
include/raffle/nn.h:
include/raffle/train.h:
include/raffle/ckpt.h:
