/**
 * Watches the config file and the files it names, and says when one of them changed. It
 * watches their folders rather than the files: editors save by writing a new file and renaming
 * it over the old one, and Kubernetes updates a mounted ConfigMap by swapping a symlink, both of
 * which end a watch on the file itself. Bursts of events (a save is often several) are merged
 * into one, after `settle` ms of quiet.
 */
import { type FSWatcher, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'

export class FileWatcher {
  readonly #onChange: (file: string) => void
  readonly #settle: number
  #watchers: FSWatcher[] = []
  /** File → its content when last seen, so that an event that changed nothing (a touch, a chmod) is ignored. */
  #seen = new Map<string, string | null>()
  #timer: NodeJS.Timeout | null = null

  constructor(onChange: (file: string) => void, settle = 150) {
    this.#onChange = onChange
    this.#settle = settle
  }

  /** Watches these files (absolute paths) from now on, instead of the ones before. */
  watch(files: readonly string[]): void {
    const wanted = new Set(files)
    if (wanted.size === this.#seen.size && [...wanted].every((f) => this.#seen.has(f))) return
    this.#stop()
    this.#seen = new Map([...wanted].map((f) => [f, null]))
    for (const file of wanted) void this.#remember(file)
    const byFolder = new Map<string, Set<string>>()
    for (const file of wanted) {
      const names = byFolder.get(dirname(file)) ?? new Set<string>()
      names.add(basename(file))
      byFolder.set(dirname(file), names)
    }
    for (const [folder, names] of byFolder) {
      try {
        const watcher = watch(folder, { persistent: false }, (_event, name) => {
          // A symlink swap (Kubernetes' ..data) changes no name we watch: then any event in the folder counts.
          if (name === null || names.has(name) || name.startsWith('..')) this.#schedule()
        })
        watcher.on('error', () => {
          // The folder went away: nothing more to watch there.
        })
        this.#watchers.push(watcher)
      } catch {
        // A folder that cannot be watched: changes there are picked up by SIGHUP or POST /admin/reload instead.
      }
    }
  }

  close(): void {
    this.#stop()
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #stop(): void {
    for (const w of this.#watchers) w.close()
    this.#watchers = []
  }

  #schedule(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#fire(), this.#settle)
    this.#timer.unref()
  }

  async #fire(): Promise<void> {
    this.#timer = null
    let changed: string | null = null
    for (const file of this.#seen.keys()) {
      const before = this.#seen.get(file)
      const now = await this.#remember(file)
      if (now !== before && changed === null) changed = file
    }
    if (changed !== null) this.#onChange(changed)
  }

  async #remember(file: string): Promise<string | null> {
    let text: string | null
    try {
      text = await readFile(file, 'utf8')
    } catch {
      text = null
    }
    this.#seen.set(file, text)
    return text
  }
}
