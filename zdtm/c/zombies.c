/* zombies: `zombies exit|signal|nested`. Children that ended before the dump stay
 * zombies nobody reaped: `exit` with random exit codes, `signal` killed by random
 * signals (one with a core dump flag off), `nested` a zombie under a living child. After
 * the restore each is still waitable, with the same status. */
#include "tree_util.h"
#include <stdlib.h>

#define ZOMBIES 6

static int exit_with(void *arg)
{
	child_ready();
	_exit((int)(intptr_t)arg);
}

static int die_by(void *arg)
{
	signal((int)(intptr_t)arg, SIG_DFL);
	child_ready();
	raise((int)(intptr_t)arg);
	_exit(99);
}

static void wait_zombie(pid_t pid)
{
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	if (waitid(P_PID, pid, &info, WEXITED | WNOWAIT))
		fail("waitid %d: %m", pid);
}

static int parent_of_zombie(void *arg)
{
	int code = (int)(intptr_t)arg;
	pid_t zombie = fork_child(exit_with, (void *)(intptr_t)code);
	wait_zombie(zombie);
	child_ready();
	test_waitsig();
	if (proc_state(zombie) != 'Z')
		CHILD_FAIL("grandchild %d state %c, not a zombie", zombie, proc_state(zombie));
	int status;
	if (waitpid(zombie, &status, WNOHANG) != zombie)
		CHILD_FAIL("zombie %d not waitable: %m", zombie);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
		CHILD_FAIL("zombie status %#x, expected exit %d", status, code);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("zombies", argc, argv);
	const char *mode = argc > 1 ? argv[1] : "exit";
	const int signals[] = { SIGKILL, SIGUSR1, SIGUSR2, SIGHUP, SIGALRM, SIGPIPE, SIGINT };
	pid_t pids[ZOMBIES];
	int expected[ZOMBIES];
	pid_t nested = 0;
	for (int i = 0; i < ZOMBIES; i++) {
		if (!strcmp(mode, "signal")) {
			expected[i] = signals[test_rand64() % 7];
			pids[i] = fork_child(die_by, (void *)(intptr_t)expected[i]);
		} else {
			expected[i] = 1 + test_rand64() % 254;
			pids[i] = fork_child(exit_with, (void *)(intptr_t)expected[i]);
		}
		wait_zombie(pids[i]);
	}
	if (!strcmp(mode, "nested"))
		nested = fork_child(parent_of_zombie, (void *)(intptr_t)(1 + test_rand64() % 254));
	test_ready();
	test_waitsig();
	for (int i = 0; i < ZOMBIES; i++) {
		if (proc_state(pids[i]) != 'Z')
			fail("child %d state %c, not a zombie", pids[i], proc_state(pids[i]));
		int status;
		if (waitpid(pids[i], &status, WNOHANG) != pids[i])
			fail("zombie %d not waitable: %m", pids[i]);
		if (!strcmp(mode, "signal")) {
			if (!WIFSIGNALED(status) || WTERMSIG(status) != expected[i])
				fail("zombie %d status %#x, expected killed by %d", pids[i], status, expected[i]);
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != expected[i]) {
			fail("zombie %d status %#x, expected exit %d", pids[i], status, expected[i]);
		}
	}
	if (nested && reap_ok(nested))
		fail("child with a zombie failed (see log)");
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		fail("a child is left that was not there before the dump");
	pass();
}
