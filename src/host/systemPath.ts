/** The PATH of the system's own programs: what builds, the runner's Python tools and git see, and PATH's default. */
export const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';
