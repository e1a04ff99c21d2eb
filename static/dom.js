// The page's one DOM helper: an element by its id.
export const $ = (id) => document.getElementById(id);
