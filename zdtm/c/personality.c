/* personality: ADDR_NO_RANDOMIZE | UNAME26 plus a random ADDR_COMPAT_LAYOUT bit; after
 * restore personality(0xffffffff) is the same and uname reports a 2.6 release. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <string.h>
#include <sys/personality.h>
#include <sys/utsname.h>

int main(int argc, char **argv)
{
	test_init("personality", argc, argv);
	unsigned long wanted = ADDR_NO_RANDOMIZE | UNAME26 | ((test_rand64() & 1) ? ADDR_COMPAT_LAYOUT : 0);
	personality(wanted);
	int before = personality(0xffffffff);
	if ((unsigned long)before != wanted)
		fail("personality %#x right after setting %#lx", before, wanted);

	test_ready();
	test_waitsig();

	int after = personality(0xffffffff);
	if (after != before)
		fail("personality %#x, was %#x", after, before);
	struct utsname name;
	uname(&name);
	if (strncmp(name.release, "2.6.", 4))
		fail("UNAME26 lost: release %s", name.release);
	pass();
}
