/** The two databases the record runs on, and the few SQL spellings that differ between them. */
export type Dialect = 'mysql' | 'sqlite';

export const insertIgnore = (d: Dialect): string => (d === 'mysql' ? 'INSERT IGNORE' : 'INSERT OR IGNORE');
