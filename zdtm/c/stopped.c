/* stopped: `stopped SIGSTOP|SIGTSTP|mixed|wnowait`: children stopped by the signal (SIGTSTP
 * in a process group of its own, so it is not an orphaned group that ignores it) stay
 * stopped after the restore, and continue on SIGCONT with their state. `wnowait`: SIGSTOP,
 * and the parent saw each stop with waitid(WNOWAIT), which leaves it reportable: after
 * the restore waitid still reports it. */
#include "tree_util.h"
#include <stdlib.h>

static int stop_self(void *arg)
{
	int sig = (int)(intptr_t)arg;
	if (sig == SIGTSTP && setpgid(0, 0))
		CHILD_FAIL("setpgid: %m");
	volatile uint64_t value = test_rand64();
	uint64_t copy = value;
	pid_t self = getpid();
	child_ready();
	raise(sig);
	/* Continued: wait for the check. */
	test_waitsig();
	if (value != copy || getpid() != self)
		CHILD_FAIL("state changed while stopped");
	return 0;
}

int main(int argc, char **argv)
{
	test_init("stopped", argc, argv);
	const char *mode = argc > 1 ? argv[1] : "SIGSTOP";
	pid_t pids[4];
	int wnowait = !strcmp(mode, "wnowait");
	for (int i = 0; i < 4; i++) {
		int sig = wnowait ? SIGSTOP : !strcmp(mode, "SIGTSTP") ? SIGTSTP : !strcmp(mode, "SIGSTOP") ? SIGSTOP : (i & 1 ? SIGTSTP : SIGSTOP);
		pids[i] = fork_child(stop_self, (void *)(intptr_t)sig);
		int status;
		if (wnowait) {
			siginfo_t info = { 0 };
			if (waitid(P_PID, pids[i], &info, WSTOPPED | WNOWAIT) || info.si_code != CLD_STOPPED || info.si_status != SIGSTOP)
				fail("child %d did not stop (waitid: code %d status %d: %m)", pids[i], info.si_code, info.si_status);
		} else if (waitpid(pids[i], &status, WUNTRACED) != pids[i] || !WIFSTOPPED(status)) {
			fail("child %d did not stop (status %#x)", pids[i], status);
		}
	}
	test_ready();
	test_waitsig();
	for (int i = 0; i < 4; i++)
		if (proc_state(pids[i]) != 'T')
			fail("child %d state %c after restore, not stopped", pids[i], proc_state(pids[i]));
	for (int i = 0; wnowait && i < 4; i++) {
		siginfo_t info = { 0 };
		if (waitid(P_PID, pids[i], &info, WSTOPPED | WNOWAIT | WNOHANG) || info.si_pid != pids[i] ||
		    info.si_code != CLD_STOPPED || info.si_status != SIGSTOP)
			fail("child %d: its stop is no longer reported after restore (pid %d code %d status %d)", pids[i], info.si_pid,
			     info.si_code, info.si_status);
	}
	for (int i = 0; i < 4; i++) {
		kill(pids[i], SIGCONT);
		int status;
		if (waitpid(pids[i], &status, WCONTINUED) != pids[i] || !WIFCONTINUED(status))
			fail("child %d: no continue report (status %#x)", pids[i], status);
	}
	for (int i = 0; i < 4; i++) {
		/* The child must be back in test_waitsig before SIGTERM, or raise() races it. */
		for (int tries = 0; tries < 1000 && proc_state(pids[i]) != 'S'; tries++)
			usleep(1000);
		if (reap_ok(pids[i]))
			fail("child %d failed after SIGCONT (see log)", pids[i]);
	}
	pass();
}
