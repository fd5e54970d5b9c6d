/* tree_groups: `tree_groups MODE`. `groups`: children in process groups of their own
 * and in each other's; `sessions`: a child leading a new session with a grandchild in
 * it; `orphans`: the test is a child subreaper and adopts grandchildren whose parent
 * exited; `session_gone`: a session whose leader exited (its member adopted by the
 * test); `group_gone`: a process group whose leader exited. Ids are kept. */
#include "tree_util.h"
#include <stdlib.h>
#include <sys/prctl.h>

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static struct ids now_ids(void)
{
	struct ids ids = { getpid(), getppid(), getpgid(0), getsid(0) };
	return ids;
}

static int same(struct ids a, struct ids b)
{
	return a.pid == b.pid && a.ppid == b.ppid && a.pgid == b.pgid && a.sid == b.sid;
}

/* arg 1: this process is about to be orphaned; record ids once adopted. */
static int sleeper(void *arg)
{
	pid_t parent = getppid();
	child_ready();
	while (arg && getppid() == parent)
		usleep(1000);
	struct ids before = now_ids();
	test_waitsig();
	struct ids after = now_ids();
	if (!same(before, after))
		CHILD_FAIL("pid/ppid/pgid/sid %d/%d/%d/%d, were %d/%d/%d/%d", after.pid, after.ppid,
			   after.pgid, after.sid, before.pid, before.ppid, before.pgid, before.sid);
	return 0;
}

static pid_t shared_group;

static int in_group(void *arg)
{
	pid_t group = (pid_t)(intptr_t)arg;
	if (setpgid(0, group ? group : 0))
		CHILD_FAIL("setpgid %d: %m", group);
	return sleeper(NULL);
}

static int session_leader(void *arg)
{
	if (setsid() < 0)
		CHILD_FAIL("setsid: %m");
	int leave = (int)(intptr_t)arg;
	pid_t member = fork_child(sleeper, (void *)(intptr_t)leave);
	pid_t member2 = fork_child(leave ? sleeper : in_group, (void *)(intptr_t)leave);
	if (leave) {
		/* The grandchildren go to the subreaper; this session/group loses its leader. */
		child_ready();
		_exit(0);
	}
	struct ids before = now_ids();
	child_ready();
	test_waitsig();
	int bad = reap_ok(member) | reap_ok(member2);
	if (!same(before, now_ids()))
		CHILD_FAIL("session leader's ids changed");
	return bad ? 1 : 0;
}

static int group_leader(void *arg)
{
	if (setpgid(0, 0))
		CHILD_FAIL("setpgid: %m");
	fork_child(sleeper, (void *)1);
	fork_child(sleeper, (void *)1);
	child_ready();
	_exit(0);
}

static int orphaner(void *arg)
{
	fork_child(sleeper, (void *)1);
	fork_child(sleeper, (void *)1);
	child_ready();
	_exit(0);
}

int main(int argc, char **argv)
{
	test_init("tree_groups", argc, argv);
	const char *mode = argc > 1 ? argv[1] : "groups";
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	pid_t kids[16];
	int nkids = 0, adopt = 0;
	if (!strcmp(mode, "groups")) {
		kids[nkids++] = fork_child(in_group, NULL);
		shared_group = kids[0];
		kids[nkids++] = fork_child(in_group, (void *)(intptr_t)shared_group);
		kids[nkids++] = fork_child(in_group, (void *)(intptr_t)shared_group);
		kids[nkids++] = fork_child(in_group, NULL);
		kids[nkids++] = fork_child(sleeper, NULL);
	} else if (!strcmp(mode, "sessions")) {
		kids[nkids++] = fork_child(session_leader, (void *)0);
		kids[nkids++] = fork_child(session_leader, (void *)0);
	} else if (!strcmp(mode, "orphans")) {
		fork_child(orphaner, NULL);
		fork_child(orphaner, NULL);
		adopt = 4;
	} else if (!strcmp(mode, "session_gone")) {
		fork_child(session_leader, (void *)1);
		adopt = 2;
	} else if (!strcmp(mode, "group_gone")) {
		fork_child(group_leader, NULL);
		adopt = 2;
	}
	/* Reap the children that left and collect the orphans they left to us. */
	pid_t gone;
	int reaped = 0;
	while (reaped < (adopt ? adopt / 2 : 0) && (gone = waitpid(-1, NULL, 0)) > 0)
		reaped++;
	if (adopt) {
		for (int tries = 0; tries < 2000; tries++) {
			nkids = children_ns_pids(kids, 16);
			if (nkids >= adopt)
				break;
			usleep(1000);
		}
		if (nkids != adopt)
			fail("adopted %d orphans, expected %d", nkids, adopt);
	}
	test_ready();
	test_waitsig();
	for (int i = 0; i < nkids; i++)
		if (reap_ok(kids[i]))
			fail("child %d failed (see log)", kids[i]);
	pass();
}
