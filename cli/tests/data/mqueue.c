/* mqueue: in an IPC namespace of its own, creates a POSIX message queue (and closes
 * it: it lives on in the namespace), writes its pid to fd 3, closes it and sleeps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	setsid();
	if (unshare(CLONE_NEWIPC))
		return 2;
	mqd_t q = mq_open("/crust-test", O_CREAT | O_RDWR, 0600, NULL);
	if (q == (mqd_t)-1)
		return 3;
	mq_close(q);
	dprintf(3, "%d\n", getpid());
	close(3);
	for (;;)
		pause();
}
