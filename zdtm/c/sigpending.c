/* sigpending: blocked signals pending at dump time: SIGUSR1 for the thread (tgkill),
 * SIGUSR2 for the process (kill), SIGRTMIN+3 queued twice with random values. After
 * restore they are still pending and are delivered once unblocked, RT values in order. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile int usr1_count, usr2_count, rt_count;
static volatile int rt_values[4], rt_codes[4];

static void on_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	if (sig == SIGUSR1)
		usr1_count++;
	else if (sig == SIGUSR2)
		usr2_count++;
	else if (rt_count < 4) {
		rt_values[rt_count] = info->si_value.sival_int;
		rt_codes[rt_count] = info->si_code;
		rt_count++;
	}
}

int main(int argc, char **argv)
{
	test_init("sigpending", argc, argv);
	int rt = SIGRTMIN + 3;
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = on_signal;
	action.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &action, NULL);
	sigaction(SIGUSR2, &action, NULL);
	sigaction(rt, &action, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, rt);
	sigprocmask(SIG_BLOCK, &set, NULL);

	int values[2] = {(int)test_rand64(), (int)test_rand64()};
	raise(SIGUSR1);
	kill(getpid(), SIGUSR2);
	for (int i = 0; i < 2; i++)
		if (sigqueue(getpid(), rt, (union sigval){.sival_int = values[i]}))
			fail("sigqueue: %m");

	test_ready();
	test_waitsig();

	sigset_t pending;
	sigpending(&pending);
	if (!sigismember(&pending, SIGUSR1) || !sigismember(&pending, SIGUSR2) || !sigismember(&pending, rt))
		fail("pending after restore: usr1 %d usr2 %d rt %d", sigismember(&pending, SIGUSR1),
		     sigismember(&pending, SIGUSR2), sigismember(&pending, rt));
	if (usr1_count || usr2_count || rt_count)
		fail("blocked signals were delivered early");
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (usr1_count != 1 || usr2_count != 1)
		fail("delivered SIGUSR1 %d times, SIGUSR2 %d times", usr1_count, usr2_count);
	if (rt_count != 2)
		fail("SIGRTMIN+3 delivered %d times, queued 2", rt_count);
	for (int i = 0; i < 2; i++)
		if (rt_values[i] != values[i] || rt_codes[i] != SI_QUEUE)
			fail("rt signal %d: value %d code %d, queued %d", i, rt_values[i], rt_codes[i], values[i]);
	pass();
}
