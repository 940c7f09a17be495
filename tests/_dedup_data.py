"""Generated bilingual instruction data with planted near duplicates and hard negatives, for the
dedup accuracy test and benches/dedup_bench.py. Deterministic for a seed.

Each family is a base sample plus variants a person would call "the same sample": punctuation
width swapped, whitespace changed, a few characters or words edited, a sentence moved, a closing
boilerplate line added; and hard negatives: the same instruction with a different answer.
"""
from __future__ import annotations

import random
from typing import Any

ZH_WORDS = ("数据 模型 训练 学习 问题 方法 系统 用户 文件 函数 变量 参数 结果 计算 分析 设计 开发 测试 部署 服务 网络 "
            "请求 响应 缓存 索引 查询 数据库 表格 字段 记录 排序 算法 复杂度 内存 性能 优化 错误 异常 日志 配置 环境 "
            "版本 依赖 安装 更新 删除 创建 修改 读取 写入 发送 接收 处理 转换 验证 检查 比较 合并 拆分 过滤 统计 平均 "
            "最大 最小 总和 时间 空间 线程 进程 并发 同步 异步 队列 栈 树 图 节点 边 路径 搜索 遍历 递归 循环 条件 "
            "判断 分支 返回 调用 接口 实现 继承 封装 对象 类 实例 属性 方法论 框架 工具 平台 语言 文本 图片 声音 视频 "
            "城市 天气 旅行 美食 健康 运动 睡眠 阅读 写作 音乐 电影 历史 经济 教育 科学 自然 动物 植物 季节 节日").split()
ZH_GLUE = ("的 了 在 是 和 与 把 被 对 从 到 让 使 就 也 都 还 很 更 最 可以 需要 应该 能够 通过 因为 所以 如果 那么 "
           "然后 首先 其次 最后 同时 另外 例如 比如 一般 通常").split()
EN_WORDS = ("data model training learning problem method system user file function variable parameter result compute "
            "analysis design develop test deploy service network request response cache index query database table "
            "field record sort algorithm complexity memory performance optimize error exception log config environment "
            "version dependency install update delete create modify read write send receive process convert validate "
            "check compare merge split filter count average maximum minimum sum time space thread concurrency queue "
            "stack tree graph node edge path search traverse recursion loop condition branch return call interface "
            "object class instance attribute framework tool platform language text image sound video city weather "
            "travel food health sport sleep reading writing music movie history economy education science nature "
            "animal plant season holiday river mountain garden kitchen window market bridge engine signal").split()
EN_GLUE = "the a of to and in for with on by from that this is are can should will when then because so".split()
ZH_CLOSERS = ("希望对你有帮助！", "如有疑问，欢迎继续提问。")
EN_CLOSERS = ("Hope this helps!", "Let me know if you have any other questions.")
FULL = {",": "，", ".": "。", "!": "！", "?": "？", ":": "：", ";": "；", "(": "（", ")": "）"}
HALF = {v: k for k, v in FULL.items()}


def _zh_sentence(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(5, 9)):
        parts.append(rng.choice(ZH_WORDS))
        if rng.random() < 0.6:
            parts.append(rng.choice(ZH_GLUE))
    return "".join(parts) + rng.choice("。。。！？")


def _en_sentence(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(8, 14)):
        words.append(rng.choice(EN_WORDS) if rng.random() < 0.6 else rng.choice(EN_GLUE))
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice("...!?")


def _mixed_sentence(rng: random.Random) -> str:
    s = _zh_sentence(rng)
    cut = rng.randint(1, max(1, len(s) - 2))
    return s[:cut] + " " + " ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(1, 3))) + " " + s[cut:]


def base_sample(rng: random.Random, lang: str) -> tuple[str, str]:
    sent = {"zh": _zh_sentence, "en": _en_sentence, "mixed": _mixed_sentence}[lang]
    instruction = sent(rng)
    answer = " ".join(sent(rng) for _ in range(rng.randint(3, 6))) if lang == "en" else "".join(sent(rng) for _ in range(rng.randint(3, 6)))
    return instruction, answer


def _edit_chars(rng: random.Random, text: str, k: int) -> str:
    chars = list(text)
    for _ in range(k):
        i = rng.randrange(len(chars))
        chars[i] = rng.choice("的是在数据模型") if "\u4e00" <= chars[i] <= "\u9fff" else rng.choice("aeiou")
    return "".join(chars)


def _edit_words(rng: random.Random, text: str, k: int) -> str:
    words = text.split(" ")
    for _ in range(k):
        words[rng.randrange(len(words))] = rng.choice(EN_WORDS)
    return " ".join(words)


def _move_sentence(rng: random.Random, text: str) -> str:
    import re

    parts = [p for p in re.split(r"(?<=[。！？.!?])\s*", text) if p]
    if len(parts) < 3:
        return text
    i = rng.randrange(len(parts))
    moved = parts.pop(i)
    parts.insert(rng.randrange(len(parts) + 1), moved)
    return (" " if all(p.isascii() for p in parts) else "").join(parts)


def variant(rng: random.Random, ins: str, ans: str, lang: str) -> tuple[str, str]:
    kind = rng.choice(("width", "space", "edit", "move", "closer"))
    if kind == "width":
        table = FULL if rng.random() < 0.5 else HALF
        return "".join(table.get(c, c) for c in ins), "".join(table.get(c, c) for c in ans)
    if kind == "space":
        return "  " + ins.replace(" ", "   ") + " ", ans.replace("。", "。\n").replace(". ", ".\n\n")
    if kind == "edit":
        return ins, (_edit_words(rng, ans, 2) if lang == "en" else _edit_chars(rng, ans, 3))
    if kind == "move":
        return ins, _move_sentence(rng, ans)
    closer = rng.choice(EN_CLOSERS if lang == "en" else ZH_CLOSERS)
    return ins, ans + ("\n\n" if lang == "en" else "") + closer


def generate(n_families: int, seed: int = 0, variants: tuple[int, int] = (0, 3), negatives: float = 0.2) -> list[tuple[str, str, int]]:
    """(instruction, answer, family) rows, shuffled. About a third of families get variants."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, int]] = []
    for fam in range(n_families):
        lang = rng.choice(("zh", "en", "mixed"))
        ins, ans = base_sample(rng, lang)
        rows.append((ins, ans, fam))
        if rng.random() < 0.35:
            for _ in range(rng.randint(*variants) or 1):
                v = variant(rng, ins, ans, lang)
                rows.append((v[0], v[1], fam))
        if rng.random() < negatives:
            rows.append((ins, base_sample(rng, lang)[1], fam))  # same instruction, other answer
    rng.shuffle(rows)
    return rows


def pair_scores(predicted: list[int | None], truth: list[int | None]) -> tuple[float, float, float]:
    """Pair precision, recall, F1 of two clusterings (label per row; None: alone)."""
    from collections import Counter

    def pairs(labels: list[int | None]) -> int:
        return sum(c * (c - 1) // 2 for c in Counter(x for x in labels if x is not None).values())

    both = Counter((p, t) for p, t in zip(predicted, truth) if p is not None and t is not None)
    tp = sum(c * (c - 1) // 2 for c in both.values())
    pp, tt = pairs(predicted), pairs(truth)
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def truth_clusters(texts: list[str], families: list[int], threshold: float, shingle: int) -> list[int | None]:
    """Ground truth: connected components of pairs whose exact Jaccard on the same shingles (and
    normalised text) reaches the threshold. Pairs are compared within families plus every pair of
    identical normalised texts; across families random text shares almost no shingles."""
    from collections import defaultdict

    from curation.normalize import normalize
    from curation.shingles import jaccard, shingle_set

    norm = [normalize(t) for t in texts]
    sets = [shingle_set(t, shingle) for t in norm]
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    groups: dict[Any, list[int]] = defaultdict(list)
    for i, f in enumerate(families):
        groups[("f", f)].append(i)
        groups[("t", norm[i])].append(i)
    for members in groups.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                if norm[i] and (norm[i] == norm[j] or jaccard(sets[i], sets[j]) >= threshold):
                    parent[find(i)] = find(j)
    roots = [find(i) for i in range(len(texts))]
    from collections import Counter

    sizes = Counter(roots)
    return [r if sizes[r] > 1 else None for r in roots]



