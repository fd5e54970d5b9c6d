/* zombies: `zombies exit|signal|nested|group_gone`. Children that ended before the dump
 * stay zombies nobody reaped: `exit` with random exit codes, `signal` killed by random
 * signals (one with a core dump flag off), `nested` a zombie under a living child,
 * `group_gone` a zombie in a process group whose leader exited, under a parent that is
 * not a subreaper (the leader's child, adopted by the test, a subreaper). After the
 * restore each is still waitable, with the same status (and process group). */
#include "tree_util.h"
#include <stdlib.h>
#include <sys/prctl.h>

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

/* `group_gone`: in the group of a leader that exits once this process has its zombie. */
static int parent_in_gone_group(void *arg)
{
	int code = (int)(intptr_t)arg;
	pid_t leader = getppid(), zombie = fork_child(exit_with, (void *)(intptr_t)code);
	wait_zombie(zombie);
	if (getpgid(zombie) != leader || getpgid(0) != leader)
		CHILD_FAIL("zombie group %d, own group %d, not the leader's %d", getpgid(zombie), getpgid(0), leader);
	child_ready();
	/* Adopted by the test once the leader is gone. */
	while (getppid() == leader)
		usleep(1000);
	test_waitsig();
	if (proc_state(zombie) != 'Z')
		CHILD_FAIL("grandchild %d state %c, not a zombie", zombie, proc_state(zombie));
	if (getpgid(zombie) != leader || getpgid(0) != leader)
		CHILD_FAIL("after restore zombie group %d, own group %d, not the gone leader's %d", getpgid(zombie), getpgid(0), leader);
	int status;
	if (waitpid(zombie, &status, WNOHANG) != zombie)
		CHILD_FAIL("zombie %d not waitable: %m", zombie);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
		CHILD_FAIL("zombie status %#x, expected exit %d", status, code);
	return 0;
}

static int gone_leader(void *arg)
{
	if (setpgid(0, 0))
		CHILD_FAIL("setpgid: %m");
	fork_child(parent_in_gone_group, arg);
	child_ready();
	return 0;
}

/* `group_gone`: the parent of the zombie, once adopted; returns its pid. */
static pid_t zombie_in_gone_group(int code)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		fail("PR_SET_CHILD_SUBREAPER: %m");
	pid_t leader = fork_child(gone_leader, (void *)(intptr_t)code);
	int status;
	if (waitpid(leader, &status, 0) != leader || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("group leader %d ended with %#x", leader, status);
	pid_t kids[4];
	int n = 0;
	for (int tries = 0; tries < 5000 && (n = children_ns_pids(kids, 4)) < 1; tries++)
		usleep(1000);
	if (n != 1)
		fail("%d children adopted from the gone leader, expected 1", n);
	/* It is back in test_waitsig's sleep only once it saw its new parent. */
	for (int tries = 0; tries < 5000 && proc_state(kids[0]) != 'S'; tries++)
		usleep(1000);
	return kids[0];
}

int main(int argc, char **argv)
{
	test_init("zombies", argc, argv);
	const char *mode = argc > 1 ? argv[1] : "exit";
	const int signals[] = { SIGKILL, SIGUSR1, SIGUSR2, SIGHUP, SIGALRM, SIGPIPE, SIGINT };
	pid_t pids[ZOMBIES];
	int expected[ZOMBIES];
	pid_t nested = 0;
	if (!strcmp(mode, "group_gone")) {
		pid_t parent = zombie_in_gone_group(1 + test_rand64() % 254);
		test_ready();
		test_waitsig();
		if (reap_ok(parent))
			fail("the zombie's parent failed (see log)");
		pass();
	}
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
