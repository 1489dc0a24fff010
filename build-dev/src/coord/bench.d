build-dev/src/coord/bench.o: src/coord/bench.c src/coord/coord_internal.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 include/raffle/coord.h include/raffle/core.h include/raffle/job.h
src/coord/coord_internal.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
include/raffle/coord.h:
include/raffle/core.h:
include/raffle/job.h:
