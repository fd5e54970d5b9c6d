/* sysv_attach: attaches a System V segment of crust's (the host's) IPC namespace, fills
 * it, writes "PID SHMID" to fd 3 and closes it, then waits for SIGUSR1 and writes PASS
 * to argv[1] if the segment still holds its data. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/shm.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	setsid();
	int id = shmget(IPC_PRIVATE, 1 << 16, IPC_CREAT | 0600);
	unsigned char *p = shmat(id, NULL, 0);
	if (id < 0 || p == (void *)-1)
		return 3;
	for (int i = 0; i < 1 << 16; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	signal(SIGUSR1, on_usr1);
	dprintf(3, "%d %d\n", getpid(), id);
	close(3);
	while (!go)
		pause();
	for (int i = 0; i < 1 << 16; i++)
		if (p[i] != (unsigned char)(i * 7 + 1))
			return 4;
	FILE *out = fopen(argv[1], "w");
	fputs("PASS\n", out);
	fclose(out);
	return 0;
}
