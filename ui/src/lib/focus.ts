// Keyboard helpers for dialogs: focus a field when it appears.

/** An attachment that focuses its element once it is in the page. */
export function focusOnMount(el: HTMLElement): void {
  queueMicrotask(() => el.focus());
}
