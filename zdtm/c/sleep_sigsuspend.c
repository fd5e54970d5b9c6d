/* sleep_sigsuspend: asleep in sigsuspend() at dump time, with SIGTERM blocked outside it
 * and a random extra set blocked: after restore the mask outside sigsuspend is the one
 * from before, and only SIGTERM ended the sleep. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <signal.h>

int main(int argc, char **argv)
{
	test_init("sleep_sigsuspend", argc, argv);
	sigset_t blocked, during;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	uint64_t bits = test_rand64();
	const int extra[] = {SIGUSR1, SIGUSR2, SIGPIPE, SIGWINCH, SIGRTMIN + 2};
	for (int i = 0; i < 5; i++)
		if (bits & (1u << i))
			sigaddset(&blocked, extra[i]);
	sigprocmask(SIG_SETMASK, &blocked, NULL);
	during = blocked;
	sigdelset(&during, SIGTERM);

	test_ready();
	while (!test_sig_received()) {
		int rc = sigsuspend(&during);
		if (rc != -1 || errno != EINTR)
			fail("sigsuspend returned %d (%m)", rc);
	}
	sigset_t now;
	sigprocmask(SIG_BLOCK, NULL, &now);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP && sigismember(&now, s) != sigismember(&blocked, s))
			fail("mask after sigsuspend: bit %d is %d, was %d", s, sigismember(&now, s),
			     sigismember(&blocked, s));
	pass();
}
