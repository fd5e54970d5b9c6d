/* sched_attrs: five threads with their own scheduling, each with a random part: the main
 * thread SCHED_OTHER at a nice value, one SCHED_BATCH, one SCHED_IDLE, one SCHED_FIFO with
 * SCHED_RESET_ON_FORK, one SCHED_RR (with a nice value of its own, which the kernel keeps
 * for a real-time thread too). The threads sleep in read(2) on a pipe. After restore the
 * main thread reads every thread's policy, priority and nice value back by its tid. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

struct want {
	int policy;
	int priority;
	int nice;
	pid_t tid;
	volatile int ready;
	int error;
};

static struct want wants[5];
static int sleep_pipe[2];

static int apply(struct want *w)
{
	pid_t tid = syscall(SYS_gettid);
	if (setpriority(PRIO_PROCESS, tid, w->nice))
		return errno;
	struct sched_param param = { .sched_priority = w->priority };
	if (sched_setscheduler(tid, w->policy, &param))
		return errno;
	w->tid = tid;
	return 0;
}

static void *thread_main(void *arg)
{
	struct want *w = arg;
	w->error = apply(w);
	__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
	char byte;
	while (read(sleep_pipe[0], &byte, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	test_init("sched_attrs", argc, argv);
	uint64_t r = test_rand64();
	wants[0] = (struct want){ SCHED_OTHER, 0, 1 + (int)(r % 10) };
	wants[1] = (struct want){ SCHED_BATCH, 0, (int)((r >> 8) % 20) - 5 };
	wants[2] = (struct want){ SCHED_IDLE, 0, (int)((r >> 16) % 20) };
	wants[3] = (struct want){ SCHED_FIFO | SCHED_RESET_ON_FORK, 1 + (int)((r >> 24) % 50), 0 };
	wants[4] = (struct want){ SCHED_RR, 1 + (int)((r >> 32) % 50), -3 - (int)((r >> 40) % 10) };
	if (pipe(sleep_pipe))
		fail("pipe: %m");
	int error = apply(&wants[0]);
	if (error)
		fail("main thread: %s", strerror(error));
	for (int i = 1; i < 5; i++) {
		pthread_t thread;
		if (pthread_create(&thread, NULL, thread_main, &wants[i]))
			fail("pthread_create");
		while (!__atomic_load_n(&wants[i].ready, __ATOMIC_ACQUIRE))
			sched_yield();
		/* A real-time policy can be refused where the cgroup gives no real-time time
		 * (cpu.rt_runtime_us 0): nothing to test then. */
		if (wants[i].error == EPERM && (wants[i].policy & ~SCHED_RESET_ON_FORK) != SCHED_BATCH &&
		    (wants[i].policy & ~SCHED_RESET_ON_FORK) != SCHED_IDLE)
			test_skip("sched_setscheduler of a real-time policy refused here (EPERM)");
		if (wants[i].error)
			fail("thread %d: policy %#x: %s", i, wants[i].policy, strerror(wants[i].error));
	}
	for (int i = 0; i < 5; i++)
		test_log("thread %d (tid %d): policy %#x priority %d nice %d", i, wants[i].tid, wants[i].policy,
			 wants[i].priority, wants[i].nice);

	test_ready();
	test_waitsig();

	for (int i = 0; i < 5; i++) {
		struct want *w = &wants[i];
		int policy = sched_getscheduler(w->tid);
		struct sched_param param = { 0 };
		sched_getparam(w->tid, &param);
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, w->tid);
		if (policy != w->policy || param.sched_priority != w->priority || nice != w->nice)
			fail("thread %d (tid %d): policy %#x priority %d nice %d, was %#x %d %d", i, w->tid, policy,
			     param.sched_priority, nice, w->policy, w->priority, w->nice);
	}
	pass();
}
