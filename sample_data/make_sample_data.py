"""Write the sample data sets in this folder, deterministically (seed 7): run
`python sample_data/make_sample_data.py` and the files come out byte-identical.

- alpaca_mixed.json: a JSON array of Chinese and English alpaca records (code, summarising, QA,
  writing, translation) with planted exact duplicates, near duplicates and low-quality rows;
  README.md lists every planted row by id and element number.
- sharegpt_chat.jsonl: multi-turn conversations in Chinese and English.
- raw_text.jsonl: domain paragraphs ({"text": ...}) for continued pretraining.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(7)

QA_ZH = [
    ("什么是LoRA微调？", "LoRA（低秩适配）在模型的关键权重旁边加入两个小矩阵A和B，只训练这两个矩阵，原始权重保持冻结。这样可训练参数减少几百倍，显存占用也大幅下降。"),
    ("QLoRA和LoRA有什么区别？", "QLoRA在LoRA的基础上把基座模型量化为4-bit，再在其上训练LoRA适配器。显存需求进一步降低，代价是训练速度稍慢、精度有轻微损失。"),
    ("为什么微调前要清洗数据？", "模型会忠实地学习训练数据里的错误、重复和噪声。清洗可以去掉重复样本、低质量回答和格式错误，让有限的训练步数花在有价值的样本上。"),
    ("学习率设置过大会出现什么问题？", "学习率过大时损失会剧烈震荡甚至发散，模型可能忘记预训练学到的知识。LoRA微调常用的学习率在1e-4到2e-4之间。"),
    ("什么是过拟合？", "过拟合是指模型在训练集上表现很好，但在没见过的数据上表现变差。常见迹象是训练损失持续下降而验证损失开始上升。"),
    ("验证集的作用是什么？", "验证集不参与训练，用来评估模型在新数据上的表现，帮助选择最佳检查点、发现过拟合，并比较不同超参数。"),
    ("梯度累积有什么用？", "梯度累积把多个小批次的梯度相加后再更新参数，在显存有限时模拟更大的批次大小。"),
    ("什么是指令微调？", "指令微调使用“指令—回答”格式的数据训练模型，让它学会按照人的要求完成任务，而不仅仅是续写文本。"),
    ("如何判断微调是否成功？", "可以看验证损失是否下降，再用一组固定的测试问题对比微调前后的回答，最好请领域专家打分。"),
    ("LoRA的秩r一般取多少？", "常见取值是8、16或32。秩越大，适配器表达能力越强，但参数和显存也随之增加；数据量少时8或16通常就够了。"),
    ("北京是哪个国家的首都？", "北京是中华人民共和国的首都。"),
    ("水的沸点是多少？", "在一个标准大气压下，水的沸点是100摄氏度。海拔越高，气压越低，沸点也越低。"),
    ("光合作用的产物是什么？", "光合作用利用光能把二氧化碳和水转化为葡萄糖，并释放出氧气。"),
    ("什么是通货膨胀？", "通货膨胀是指一段时间内物价总体水平持续上涨、货币购买力下降的现象。"),
    ("长城有多长？", "根据2012年国家文物局公布的数据，历代长城总长度约为21196千米。"),
    ("什么是区块链？", "区块链是一种按时间顺序把数据块连接起来的分布式账本，每个块都包含前一个块的哈希值，因此历史记录很难被篡改。"),
    ("Python中列表和元组有什么区别？", "列表是可变的，可以增删改元素；元组是不可变的，创建后不能修改。元组可以作为字典的键，列表不行。"),
    ("什么是HTTP状态码404？", "404表示服务器找不到请求的资源，通常是网址写错了或页面已被删除。"),
    ("人体最大的器官是什么？", "人体最大的器官是皮肤，成年人的皮肤面积约为1.5到2平方米。"),
    ("什么是机器学习中的特征？", "特征是描述样本的可量化属性，比如房价预测中的面积、楼层和地段。好的特征能让模型更容易学到规律。"),
    ("显存不足时有哪些办法？", "可以减小批次大小并配合梯度累积、开启梯度检查点、改用QLoRA量化基座模型，或者缩短最大序列长度。"),
    ("什么是分词器？", "分词器把文本切分成模型词表中的单元（token），并把它们映射为整数编号；训练和推理必须使用同一个分词器。"),
    ("为什么要设置随机种子？", "设置随机种子可以让数据划分、参数初始化和采样结果可复现，便于对比实验。"),
    ("什么是混合精度训练？", "混合精度训练在前向和反向计算中使用bf16或fp16，同时用fp32保存关键状态，既省显存又加快速度。"),
    ("月球绕地球一圈需要多久？", "月球绕地球公转一周约需27.3天（恒星月），从一次满月到下一次满月约29.5天。"),
    ("什么是开源软件？", "开源软件公开源代码，允许任何人按照许可证的条款查看、修改和再发布。"),
    ("如何提高阅读速度？", "先浏览标题和小结把握结构，阅读时减少回读，带着问题读，并通过定期练习逐步扩大每次注视的词组范围。"),
    ("什么是数据增强？", "数据增强通过改写、回译、生成新样本等方式扩充训练数据，提高模型的泛化能力。"),
    ("早睡早起有什么好处？", "规律的作息有助于稳定生物钟，提高睡眠质量，白天精力更充沛，也有利于免疫系统。"),
    ("什么是API？", "API（应用程序编程接口）是软件之间约定好的调用方式，一个程序可以通过它请求另一个程序的功能或数据。"),
]

QA_EN = [
    ("What is fine-tuning in machine learning?", "Fine-tuning continues training a pretrained model on a smaller, task-specific dataset so it adapts to that task while keeping most of its general knowledge."),
    ("Why use a validation set?", "A validation set is held out from training. It shows how the model does on unseen data, which helps you pick checkpoints and spot overfitting."),
    ("What does a learning rate control?", "The learning rate sets the size of each parameter update. Too high and training diverges; too low and it crawls or gets stuck."),
    ("What is gradient checkpointing?", "Gradient checkpointing saves memory by storing only some activations in the forward pass and recomputing the rest during the backward pass, trading compute for memory."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney as many people assume."),
    ("How many continents are there?", "By the most common convention there are seven continents: Africa, Antarctica, Asia, Australia, Europe, North America and South America."),
    ("What causes the seasons on Earth?", "Seasons are caused by the tilt of Earth's axis, about 23.4 degrees, which changes how directly sunlight hits each hemisphere over the year."),
    ("What is a hash function?", "A hash function maps data of any size to a fixed-size value. Good cryptographic hashes make it infeasible to find two inputs with the same output."),
    ("What is the difference between RAM and storage?", "RAM is fast, temporary memory the computer uses while running programs; storage such as an SSD keeps data permanently, even when the power is off."),
    ("What is overfitting?", "Overfitting happens when a model memorises the training data, including its noise, and performs worse on new data."),
    ("What is a tokenizer?", "A tokenizer splits text into units from the model's vocabulary and maps them to integer ids. Training and inference must use the same tokenizer."),
    ("Why deduplicate training data?", "Duplicates make the model see the same examples too often, which wastes compute, skews it toward those examples and inflates evaluation scores."),
    ("What is photosynthesis?", "Photosynthesis is the process by which plants use light energy to turn carbon dioxide and water into glucose, releasing oxygen."),
    ("Who wrote 'Pride and Prejudice'?", "'Pride and Prejudice' was written by Jane Austen and published in 1813."),
    ("What is compound interest?", "Compound interest is interest earned on both the original principal and the interest already added, so savings grow faster over time."),
    ("What does HTTP 500 mean?", "HTTP 500 is a generic server error: the server hit an unexpected condition and could not complete the request."),
    ("What is the speed of light?", "Light travels at about 299,792 kilometres per second in a vacuum."),
    ("What is a LoRA adapter?", "A LoRA adapter is a small set of low-rank matrices trained beside a frozen model's weights. It can be saved separately and loaded onto the base model later."),
    ("Why does batch size matter?", "Batch size affects memory use, training speed and the noise in gradient estimates; larger batches need more memory but give smoother updates."),
    ("What is a vector database?", "A vector database stores embeddings and finds the nearest ones to a query vector quickly, which is the core of semantic search and retrieval-augmented generation."),
    ("What is the boiling point of water at sea level?", "At sea level water boils at 100 degrees Celsius, or 212 degrees Fahrenheit."),
    ("How do vaccines work?", "Vaccines expose the immune system to a harmless form or piece of a pathogen so it learns to recognise it and can respond quickly to a real infection."),
    ("What is version control?", "Version control records changes to files over time so you can review history, revert mistakes and work with others in parallel; Git is the most widely used system."),
    ("What is a prime number?", "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5, 7 and 11."),
    ("What is mixed precision training?", "Mixed precision training runs most computation in 16-bit floats such as bf16 while keeping sensitive values in 32-bit, saving memory and time."),
    ("How can I improve my sleep?", "Keep a regular schedule, limit caffeine after noon, keep the bedroom dark and cool, and avoid screens for the last hour before bed."),
    ("What is an API rate limit?", "A rate limit caps how many requests a client may send in a time window; clients should back off and retry when they receive HTTP 429."),
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain above sea level, at about 8,849 metres."),
    ("What is a learning rate warmup?", "Warmup starts training with a small learning rate and raises it over the first steps, which keeps early updates from destabilising the model."),
    ("What is open-source software?", "Open-source software publishes its source code under a licence that lets anyone study, change and redistribute it."),
]

TRANSLATE = [
    ("The weather is lovely today, let's go for a walk in the park.", "今天天气很好，我们去公园散步吧。"),
    ("Please send me the report before Friday.", "请在周五之前把报告发给我。"),
    ("Machine learning models need high-quality data.", "机器学习模型需要高质量的数据。"),
    ("The meeting has been moved to three o'clock.", "会议改到三点了。"),
    ("I have been learning Chinese for two years.", "我学中文已经两年了。"),
    ("This restaurant is famous for its noodles.", "这家餐厅以面条出名。"),
    ("Could you speak a little more slowly?", "你能说得慢一点吗？"),
    ("The train to Shanghai leaves at eight in the morning.", "去上海的火车早上八点出发。"),
    ("Reading before bed helps me relax.", "睡前阅读能帮我放松。"),
    ("Our team finished the project ahead of schedule.", "我们团队提前完成了项目。"),
    ("Remember to back up your files regularly.", "记得定期备份你的文件。"),
    ("The library is closed on public holidays.", "图书馆在法定节假日闭馆。"),
    ("She plays the piano every evening.", "她每天晚上弹钢琴。"),
    ("Drinking enough water is important for your health.", "喝足够的水对健康很重要。"),
    ("The model was fine-tuned on customer service dialogues.", "这个模型在客服对话数据上做了微调。"),
    ("Please turn off the lights when you leave the room.", "离开房间时请关灯。"),
    ("The price of vegetables has gone up this month.", "这个月蔬菜价格上涨了。"),
    ("He apologised for being late.", "他为迟到道了歉。"),
    ("We should reduce the use of plastic bags.", "我们应该减少使用塑料袋。"),
    ("The museum offers free admission on Wednesdays.", "博物馆每周三免费开放。"),
    ("Training loss went down but validation loss went up.", "训练损失下降了，但验证损失上升了。"),
    ("Spring is the best season to visit Hangzhou.", "春天是游览杭州的最佳季节。"),
]

CODE = [
    ("写一个Python函数，判断一个整数是否为质数。", "Write a Python function that checks whether an integer is prime.",
     "```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n```"),
    ("用Python实现快速排序。", "Implement quicksort in Python.",
     "```python\ndef quicksort(items):\n    if len(items) <= 1:\n        return items\n    pivot, *rest = items\n    left = [x for x in rest if x < pivot]\n    right = [x for x in rest if x >= pivot]\n    return quicksort(left) + [pivot] + quicksort(right)\n```"),
    ("写一个函数，统计字符串中每个字符出现的次数。", "Write a function that counts how often each character occurs in a string.",
     "```python\nfrom collections import Counter\n\ndef char_counts(text: str) -> dict[str, int]:\n    return dict(Counter(text))\n```"),
    ("如何用Python读取一个JSON Lines文件？", "How do I read a JSON Lines file in Python?",
     "```python\nimport json\n\ndef read_jsonl(path):\n    with open(path, encoding=\"utf-8\") as f:\n        return [json.loads(line) for line in f if line.strip()]\n```"),
    ("写一个SQL查询，找出每个部门工资最高的员工。", "Write a SQL query that finds the highest-paid employee in each department.",
     "```sql\nSELECT department, name, salary\nFROM (\n  SELECT *, row_number() OVER (PARTITION BY department ORDER BY salary DESC) AS rn\n  FROM employees\n) t\nWHERE rn = 1;\n```"),
    ("用Python反转一个链表。", "Reverse a singly linked list in Python.",
     "```python\ndef reverse(head):\n    prev = None\n    while head:\n        head.next, prev, head = prev, head, head.next\n    return prev\n```"),
    ("写一个函数计算斐波那契数列的第n项。", "Write a function that returns the n-th Fibonacci number.",
     "```python\ndef fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"),
    ("如何在Git中撤销最近一次提交但保留修改？", "How do I undo the last Git commit but keep the changes?",
     "```bash\ngit reset --soft HEAD~1\n```\n这会撤销提交，修改仍保留在暂存区。"),
    ("写一个Python装饰器，打印函数的运行时间。", "Write a Python decorator that prints how long a function took.",
     "```python\nimport functools, time\n\ndef timed(fn):\n    @functools.wraps(fn)\n    def wrapper(*args, **kwargs):\n        start = time.perf_counter()\n        try:\n            return fn(*args, **kwargs)\n        finally:\n            print(f\"{fn.__name__}: {time.perf_counter() - start:.3f}s\")\n    return wrapper\n```"),
    ("用JavaScript实现防抖函数。", "Implement a debounce function in JavaScript.",
     "```javascript\nfunction debounce(fn, wait) {\n  let timer;\n  return (...args) => {\n    clearTimeout(timer);\n    timer = setTimeout(() => fn(...args), wait);\n  };\n}\n```"),
    ("写一个函数，合并两个已排序的列表。", "Write a function that merges two sorted lists.",
     "```python\ndef merge(a, b):\n    out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]\n```"),
    ("如何用pandas删除重复行？", "How do I drop duplicate rows with pandas?",
     "```python\ndf = df.drop_duplicates()\n# only by some columns, keeping the last one:\ndf = df.drop_duplicates(subset=[\"instruction\"], keep=\"last\")\n```"),
    ("写一个正则表达式匹配中国大陆手机号。", "Write a regular expression that matches mainland China mobile numbers.",
     "```python\nimport re\nPHONE = re.compile(r\"^1[3-9]\\d{9}$\")\n```"),
    ("用Python实现二分查找。", "Implement binary search in Python.",
     "```python\ndef binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n```"),
]

SUMMARY = [
    ("大模型的成长分两个阶段。预训练阶段用海量文本让模型学习通用知识和语言能力，就像让学生读完所有学科的教材。微调阶段用特定领域的数据让模型专业化，就像让通才再深造医学或法律。通用模型虽然博学，但在专业任务上往往不够精准，微调能让它快速掌握某个领域的行话和思维方式。",
     "大模型先通过预训练获得通用能力，再通过微调用领域数据实现专业化，从而在特定任务上更精准。"),
    ("全参数微调会解冻模型的全部参数重新训练。以7B模型为例，至少需要多张高端显卡，单日成本很高；而且每次微调都会得到一个完整的新模型文件，想适配多个领域就要保存多个版本，存储压力巨大。因此只有大厂和科研机构才常用这种方法。",
     "全参数微调效果直接但算力和存储成本极高，通常只适合大厂和科研机构。"),
    ("QLoRA在LoRA的基础上引入4-bit量化，把模型权重从16位压缩到4位。在7B模型上，显存需求从约24GB降到8GB左右，单张消费级显卡就能训练。代价是训练时间增加两到三成，性能有轻微损失。",
     "QLoRA用4-bit量化大幅降低显存需求，让消费级显卡也能微调7B模型，代价是速度稍慢、精度略降。"),
    ("数据质量决定微调效果的上限。与其收集几万条质量参差的数据，不如精心整理几千条高质量样本：去掉重复、修正错误答案、统一格式，并保证覆盖目标任务的主要场景。",
     "微调数据重质不重量：几千条干净、覆盖全面的样本胜过几万条杂乱数据。"),
    ("城市里的共享单车解决了最后一公里的出行问题，但也带来了乱停乱放、车辆损坏和押金难退等问题。近年来，各地通过电子围栏、信用积分和总量控制等措施加强管理，行业逐渐走向规范。",
     "共享单车方便出行但曾带来管理乱象，如今通过电子围栏、信用积分等措施逐步规范。"),
    ("Remote work has become common since 2020. Employees value the time saved on commuting and the flexibility to plan their day, while companies can hire from a wider talent pool. However, teams report challenges with communication, onboarding new staff and keeping a shared culture.",
     "Remote work offers flexibility and wider hiring, but makes communication, onboarding and team culture harder."),
    ("LoRA freezes the pretrained weights and trains two small low-rank matrices beside selected layers. Because only a tiny fraction of parameters is trained, memory use drops sharply, and the resulting adapter is only tens of megabytes. Several adapters can share one base model.",
     "LoRA trains small low-rank matrices next to frozen weights, cutting memory and producing tiny, swappable adapters."),
    ("Urban gardens are spreading in many cities. They turn empty lots into green spaces, give residents access to fresh vegetables and bring neighbours together. Critics note that they can be temporary when land values rise and developers reclaim the plots.",
     "Urban gardens green empty lots, supply fresh food and build community, though rising land values can make them temporary."),
    ("A good evaluation set for a fine-tuned model should be fixed before training, cover the tasks users actually care about, and include hard cases. Comparing the base and the fine-tuned model on the same prompts side by side reveals regressions that a single loss number hides.",
     "Fix a representative, hard evaluation set before training and compare base and fine-tuned outputs side by side."),
    ("Electric cars have become cheaper as battery prices fell by almost 90 percent over the last decade. Charging networks are growing, but in many regions drivers still worry about range on long trips and waiting times at busy stations.",
     "Falling battery prices made electric cars cheaper, but range and charging waits still worry drivers."),
]

WRITING_TARGETS_ZH = [("同事", "下周一的项目评审会议改期"), ("客户", "订单发货延迟两天"), ("老师", "请假一天去医院复查"),
                      ("房东", "卫生间水龙头漏水需要维修"), ("团队", "本季度目标达成情况"), ("朋友", "周末一起去爬山")]
WRITING_TARGETS_EN = [("a colleague", "moving Monday's project review"), ("a customer", "a two-day shipping delay"),
                      ("my manager", "a request to work from home on Friday"), ("the landlord", "a leaking kitchen tap"),
                      ("the team", "this quarter's results"), ("a friend", "a hiking trip this weekend")]


def writing_zh(who: str, what: str) -> tuple[str, str]:
    return (f"帮我给{who}写一条简短的消息，内容是{what}。",
            f"您好！想跟您说一下{what}的事情。具体安排我整理好后会再发给您，如有不便请随时告诉我。谢谢理解！")


def writing_en(who: str, what: str) -> tuple[str, str]:
    return (f"Write a short, polite email to {who} about {what}.",
            f"Hi,\n\nI wanted to let you know about {what}. I will follow up with the details shortly; "
            f"please tell me if this causes any problems.\n\nThanks for your understanding,\nAlex")


def base_records() -> list[dict]:
    recs: list[dict] = []
    zh_q = ["{q}", "请回答：{q}", "简单解释一下：{q}"]
    en_q = ["{q}", "Answer briefly: {q}", "Explain in a sentence or two: {q}"]
    for i, (q, a) in enumerate(QA_ZH):
        recs.append({"instruction": zh_q[i % 3].format(q=q), "input": "", "output": a, "tags": ["qa", "zh"]})
    for i, (q, a) in enumerate(QA_EN):
        recs.append({"instruction": en_q[i % 3].format(q=q), "input": "", "output": a, "tags": ["qa", "en"]})
    for q, a in QA_ZH[:20]:  # a second phrasing of the first 20 questions
        recs.append({"instruction": f"用通俗的话说说，{q}", "input": "", "output": a, "tags": ["qa", "zh"]})
    for q, a in QA_EN[:20]:
        recs.append({"instruction": f"In plain words: {q}", "input": "", "output": a, "tags": ["qa", "en"]})
    for q, a in QA_ZH[20:]:
        recs.append({"instruction": f"{q}请举例说明。", "input": "", "output": a, "tags": ["qa", "zh"]})
    for q, a in QA_EN[20:]:
        recs.append({"instruction": f"{q} Give an example if you can.", "input": "", "output": a, "tags": ["qa", "en"]})
    for en, zh in TRANSLATE[:15]:
        recs.append({"instruction": "中译英：", "input": zh, "output": en, "tags": ["translation"]})
        recs.append({"instruction": "英译中：", "input": en, "output": zh, "tags": ["translation"]})
    for en, zh in TRANSLATE:
        recs.append({"instruction": "把下面的句子翻译成中文。", "input": en, "output": zh, "tags": ["translation"]})
        recs.append({"instruction": "Translate the following sentence into English.", "input": zh, "output": en, "tags": ["translation"]})
    for zh, en, code in CODE:
        recs.append({"instruction": zh, "input": "", "output": code, "tags": ["code", "zh"]})
        recs.append({"instruction": en, "input": "", "output": code, "tags": ["code", "en"]})
    for text, summary in SUMMARY:
        zh = any("\u4e00" <= c <= "\u9fff" for c in text)
        recs.append({"instruction": "用一句话总结下面这段话。" if zh else "Summarise the following paragraph in one sentence.",
                     "input": text, "output": summary, "tags": ["summary"]})
        recs.append({"instruction": "请概括这段文字的要点。" if zh else "What is the main point of this text?",
                     "input": text, "output": summary, "tags": ["summary"]})
    for who, what in WRITING_TARGETS_ZH:
        ins, out = writing_zh(who, what)
        recs.append({"instruction": ins, "input": "", "output": out, "tags": ["writing", "zh"]})
    for who, what in WRITING_TARGETS_EN:
        ins, out = writing_en(who, what)
        recs.append({"instruction": ins, "input": "", "output": out, "tags": ["writing", "en"]})
    recs.append({"instruction": "You are a helpful assistant. Give one tip for writing clear commit messages.", "input": "",
                 "output": "Start with a short imperative summary line, such as \"Fix crash when file is empty\", then explain why in the body.",
                 "system": "You are a concise senior engineer.", "tags": ["writing", "en"]})
    return recs


def to_fullwidth(text: str) -> str:
    return text.replace(",", "，").replace("?", "？").replace(":", "：").replace("!", "！").replace("，", "，")


def plant(recs: list[dict]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Insert planted rows; returns the rows and (kind, detail, original id) for each planted one."""
    planted: list[tuple[dict, str, str, str]] = []
    pick = rng.sample(range(len(recs)), 40)
    # ~15 exact duplicates: 5 identical, 5 whitespace only, 5 full-width punctuation only.
    for n, i in enumerate(pick[:15]):
        r = dict(recs[i])
        if n < 5:
            detail = "identical copy"
        elif n < 10:
            r["output"] = "  " + r["output"].replace(" ", "  ", 1) + " \n"
            detail = "whitespace differs (leading/trailing spaces, one doubled space)"
        else:
            r["instruction"] = to_fullwidth(r["instruction"]).replace("？", "?") if "？" in r["instruction"] else to_fullwidth(r["instruction"]) + "？"
            detail = "punctuation differs (half-width vs full-width)"
        planted.append((r, "exact duplicate", detail, recs[i]["id"]))
    # ~20 near duplicates.
    for n, i in enumerate(pick[15:35]):
        r = dict(recs[i])
        out = r["output"]
        if n % 4 == 0:
            r["output"] = out + ("\n\n希望对你有帮助！" if any("\u4e00" <= c <= "\u9fff" for c in out) else "\n\nHope this helps!")
            detail = "closing boilerplate line added"
        elif n % 4 == 1:
            parts = [p for p in out.replace("。", "。\n").replace(". ", ".\n").split("\n") if p]
            r["output"] = "".join(parts[1:] + parts[:1]) if len(parts) > 1 else out + " "
            detail = "sentences reordered" if len(parts) > 1 else "trailing space"
        elif n % 4 == 2:
            r["instruction"] = r["instruction"].replace("请", "麻烦").replace("Write", "Please write").replace("What", "So what")
            if r["instruction"] == recs[i]["instruction"]:
                r["instruction"] = r["instruction"] + "（简短回答）" if any("\u4e00" <= c <= "\u9fff" for c in r["instruction"]) else r["instruction"] + " Keep it short."
            detail = "a few words of the instruction edited"
        else:
            r["output"] = out.replace("的", "地", 1).replace("the ", "a ", 1).replace("，", ",", 1)
            if r["output"] == out:
                r["output"] = out[:-1] + ("！" if out.endswith("。") else "!")
            detail = "a character or word edited in the answer"
        planted.append((r, "near duplicate", detail, recs[i]["id"]))
    # ~25 low-quality rows.
    lowq = [
        ({"instruction": "解释一下什么是梯度下降。", "input": "", "output": ""}, "empty answer"),
        ({"instruction": "What is a neural network?", "input": "", "output": "ok"}, "too-short answer"),
        ({"instruction": "介绍一下Transformer架构。", "input": "", "output": "好"}, "too-short answer"),
        ({"instruction": "Describe the water cycle.", "input": "", "output": "Describe the water cycle."}, "answer equals instruction"),
        ({"instruction": "总结一下这篇文章。", "input": "", "output": "总结一下这篇文章。"}, "answer equals instruction"),
        ({"instruction": "Give me three tips for studying.", "input": "", "output": "Study hard. " * 30}, "repeated text"),
        ({"instruction": "如何保持健康？", "input": "", "output": "多运动多运动多运动多运动多运动多运动多运动多运动多运动多运动多运动多运动"}, "repeated text"),
        ({"instruction": "翻译成英文：数据清洗", "input": "", "output": "æ•°æ®æ¸…æ´— æ–‡æœ¬"}, "mojibake (UTF-8 read as cp1252)"),
        ({"instruction": "解释什么是向量数据库。", "input": "", "output": "å‘é‡æ•°æ®åº“æ˜¯ä¸€ç§æ–‡æœ¬"}, "mojibake"),
        ({"instruction": "What is Python?", "input": "", "output": "<div class=\"answer\"><p>Python is a programming language.</p><br/><span>&nbsp;</span></div>"}, "HTML debris"),
        ({"instruction": "什么是云计算？", "input": "", "output": "<p>云计算是通过网络按需提供计算资源的服务模式。</p>&nbsp;&nbsp;<br>"}, "HTML debris"),
        ({"instruction": "Explain how HTTPS protects data.", "input": "", "output": "HTTPS encrypts the traffic between the browser and the server using TLS, so that anyone in the middle"}, "truncated answer (ends mid-sentence)"),
        ({"instruction": "用Python写一个读取CSV的例子。", "input": "", "output": "```python\nimport csv\nwith open('data.csv') as f:\n    for row in csv.reader(f):\n"}, "truncated answer (unclosed ``` fence)"),
        ({"instruction": "Where can I learn about LoRA?", "input": "", "output": "https://arxiv.org/abs/2106.09685"}, "URL-only answer"),
        ({"instruction": "推荐一个学习Python的网站。", "input": "", "output": "https://docs.python.org/zh-cn/3/tutorial/"}, "URL-only answer"),
        ({"instruction": "Tell me a joke about programmers.", "input": "", "output": "As an AI language model, I cannot tell jokes that might offend anyone."}, "refusal boilerplate"),
        ({"instruction": "写一首关于秋天的短诗。", "input": "", "output": "作为一个AI语言模型，我无法创作诗歌。"}, "refusal boilerplate"),
        ({"instruction": "I'm sorry, can you summarise the French Revolution?", "input": "", "output": "I'm sorry, but as an AI language model I cannot provide that."}, "refusal boilerplate"),
        ({"instruction": "Write a product description for a water bottle.", "input": "", "output": "TODO"}, "placeholder"),
        ({"instruction": "写一段公司简介。", "input": "", "output": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."}, "placeholder (lorem ipsum)"),
        ({"instruction": "请用中文解释什么是API。", "input": "", "output": "An API is an interface that lets programs talk to each other."}, "answer in a different language than the instruction"),
        ({"instruction": "Explain what a database index is.", "input": "", "output": "数据库索引是一种帮助快速查找数据的数据结构。"}, "answer in a different language than the instruction"),
        ({"instruction": "Write a detailed history of computing.", "input": "", "output": " ".join(
            f"In {1940 + k} engineers built machine number {k}, which was faster than the one before it." for k in range(400))}, "over-long sample"),
        ({"instruction": "什么是", "input": "", "output": "什么是"}, "too-short instruction, answer equals instruction"),
        ({"instruction": "Summarise this.", "input": "", "output": "N/A"}, "placeholder answer, no input to summarise"),
    ]
    for r, detail in lowq:
        planted.append((r, "low quality", detail, ""))
    rows = list(recs)
    info: list[tuple[dict, str, str, str]] = []
    for n, (r, kind, detail, orig) in enumerate(planted, 1):
        r = dict(r)
        r["id"] = f"p{n:03d}"
        r.setdefault("tags", [])
        rows.insert(rng.randint(0, len(rows)), r)
        info.append((r, kind, detail, orig))
    return rows, info


SHAREGPT_TOPICS = [
    ("我想学Python，应该从哪里开始？", "建议先学基础语法：变量、条件、循环和函数，可以跟着官方教程做练习。", "学完基础之后呢？", "接着做小项目，比如写一个记账脚本或爬取天气数据，在实践中学习标准库和第三方库。"),
    ("How do I make my LoRA training use less memory?", "Lower the batch size and use gradient accumulation, enable gradient checkpointing, and shorten the maximum sequence length.", "It still runs out of memory on a 12 GB card.", "Switch to QLoRA: load the base model in 4-bit. A 7B model then fits in about 8 GB."),
    ("帮我规划一个三天的杭州旅行。", "第一天游西湖，断桥、苏堤和雷峰塔；第二天去灵隐寺和龙井村喝茶；第三天逛河坊街和京杭大运河。", "预算大概多少？", "不含往返交通，住宿每晚300到500元，餐饮和门票每天约200元，三天大约1500到2000元。"),
    ("What's the difference between a list and a tuple in Python?", "Lists are mutable and tuples are immutable; tuples can be dictionary keys.", "When should I use a tuple?", "Use a tuple for fixed records such as coordinates or for values that must not change, like dictionary keys."),
    ("我的模型验证损失一直在上升，怎么办？", "这通常是过拟合。可以减少训练轮数、降低学习率、增加数据或加大正则化。", "我只训练了3个epoch。", "数据量小时3个epoch也可能过多，试试1到2个epoch，并在验证损失最低时保存检查点。"),
    ("Can you explain what an embedding is?", "An embedding is a list of numbers that represents a piece of text so that similar meanings end up close together.", "How are they used in search?", "You embed the documents and the query, then return the documents whose vectors are nearest to the query's."),
    ("怎么写一封求职信？", "开头说明应聘的职位和信息来源，中间用两三个具体经历证明你适合这个岗位，结尾表达面试意愿并致谢。", "需要写多长？", "一页以内，三到四段，三百到五百字最合适。"),
    ("Translate 'good morning' into Chinese.", "早上好。", "And 'good night'?", "晚安。"),
    ("如何提高英语口语？", "每天坚持跟读和复述，尽量找机会和别人对话，并录音听自己的发音。", "没有语伴怎么办？", "可以用语言交换应用，或者自己给图片和日常场景做口头描述，也很有效。"),
    ("What is a good first project for learning SQL?", "Load a public dataset, such as city bike trips, into SQLite or DuckDB and answer questions about it with queries.", "What questions should I ask?", "Busiest stations by hour, average trip length by weekday, and which routes grew the most over a year."),
]


def sharegpt_rows() -> list[dict]:
    rows = []
    for n in range(40):
        u1, a1, u2, a2 = SHAREGPT_TOPICS[n % len(SHAREGPT_TOPICS)]
        zh = any("\u4e00" <= c <= "\u9fff" for c in u1)
        conv = []
        if n % 5 == 0:
            conv.append({"from": "system", "value": "你是一个耐心的助手。" if zh else "You are a patient assistant."})
        conv += [{"from": "human", "value": u1}, {"from": "gpt", "value": a1}]
        if n >= 10:
            conv += [{"from": "human", "value": u2}, {"from": "gpt", "value": a2}]
        if n >= 20:
            extra = ("谢谢！还有别的建议吗？", "多复盘：每周回顾一次进展，调整下一步的计划。") if zh else \
                    ("Thanks! Anything else?", "Keep notes of what you tried and review them weekly; it makes the next step obvious.")
            conv += [{"from": "human", "value": extra[0]}, {"from": "gpt", "value": extra[1] + ("" if n < 30 else f"（第{n}轮）" if zh else f" (round {n})")}]
        rows.append({"id": f"c{n + 1:03d}", "conversations": conv})
    return rows


RAW_TEXT = [
    "LoRA（Low-Rank Adaptation）由微软在2021年提出。它不直接修改模型参数，而是在注意力层的投影矩阵旁边加入两个低秩矩阵，训练时只更新这两个矩阵。",
    "QLoRA把基座模型量化为4-bit NormalFloat格式，并使用双重量化进一步压缩量化常数，在单张48GB显卡上即可微调65B参数的模型。",
    "数据清洗通常包括去重、过滤低质量样本、统一格式和修正错误答案。精确去重可以用内容哈希，近似去重常用MinHash和局部敏感哈希。",
    "学习率预热让训练在最初几百步内从很小的学习率逐步升高，避免随机初始化的适配器在早期产生过大的梯度更新。",
    "梯度检查点在前向传播时只保存部分激活值，反向传播时重新计算其余部分，用额外的计算换取显存。",
    "在微调对话模型时，通常只对助手回复部分计算损失，用户输入和系统提示的标签被设为-100，不参与梯度计算。",
    "验证集应在训练开始前固定下来，并且与训练集没有重复样本，否则验证损失会被高估的数据泄漏所扭曲。",
    "混合精度训练使用bf16进行矩阵运算，它与fp32有相同的指数范围，因此比fp16更不容易出现溢出。",
    "合并LoRA适配器时，应先以16位或32位精度加载基座模型，再把适配器权重加到原始矩阵上，避免在量化模型上合并带来的误差。",
    "序列打包把多条短样本拼接到同一个训练序列中，减少填充带来的浪费，配合正确的注意力掩码可以避免样本之间互相干扰。",
    "Instruction tuning trains a pretrained language model on pairs of instructions and answers so that it follows requests instead of merely continuing text.",
    "Deduplication matters because repeated examples are seen several times per epoch, which skews the model toward them and inflates evaluation scores when they leak into the validation set.",
    "MinHash estimates the Jaccard similarity of two sets by comparing the minimum hash values of their elements under many random permutations.",
    "Locality-sensitive hashing groups MinHash signatures into bands so that similar documents land in the same bucket with high probability, avoiding an all-pairs comparison.",
    "Chinese text has no spaces between words, so near-duplicate detection usually shingles characters rather than whitespace-separated tokens.",
    "The rank of a LoRA adapter controls its capacity. Ranks of 8 to 16 are common for instruction tuning; larger ranks help when the target domain differs strongly from pretraining.",
    "Gradient accumulation sums gradients over several micro-batches before an optimizer step, which simulates a larger batch on limited memory.",
    "A chat template turns a list of messages into the exact token sequence a model was trained on, including special tokens that mark the start and end of each turn.",
    "Evaluation of a fine-tuned model should combine automatic metrics with side-by-side human review of answers to a fixed set of prompts.",
    "Catastrophic forgetting describes a model losing general abilities after training on a narrow dataset; mixing in general data and using low learning rates reduce it.",
    "在医疗领域微调模型时，训练数据必须脱敏，删除姓名、身份证号、电话等个人信息，并由专业人员审核答案的准确性。",
    "法律问答数据常常引用具体条文，清洗时要注意条文版本是否过期，过时的法律依据会让模型给出错误的建议。",
    "客服对话数据里经常出现“亲”“您好”等客套话，保留适量可以让模型语气自然，但过多会让回答显得冗长。",
    "金融领域的问答对时效性要求高，利率、汇率和政策会变化，训练数据应标注日期，方便日后更新。",
    "教育类数据集中的题目解析应当步骤完整，只给出最终答案的样本会让模型学会跳步，降低推理质量。",
    "Continued pretraining on domain text, before instruction tuning, helps a model learn vocabulary and facts of a field such as medicine or law.",
    "Raw text for continued pretraining should be cleaned of boilerplate such as navigation menus, cookie banners and repeated footers.",
    "Tokenizer coverage matters for domain text: if common domain terms split into many tokens, sequences get longer and training gets slower.",
    "Packing raw documents into fixed-length sequences wastes no compute on padding; an end-of-text token separates the documents.",
    "Data licences must be checked before training: scraped text may carry terms that forbid commercial use of models trained on it.",
]


def main() -> None:
    recs = base_records()
    for n, r in enumerate(recs, 1):
        r["id"] = f"a{n:04d}"
    rows, info = plant(recs)
    rows = [{k: r[k] for k in ("id", "instruction", "input", "output", "system", "tags") if k in r} for r in rows]
    (HERE / "alpaca_mixed.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    with open(HERE / "sharegpt_chat.jsonl", "w", encoding="utf-8") as f:
        for r in sharegpt_rows():
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(HERE / "raw_text.jsonl", "w", encoding="utf-8") as f:
        for n, t in enumerate(RAW_TEXT, 1):
            f.write(json.dumps({"id": f"t{n:03d}", "text": t}, ensure_ascii=False) + "\n")
    element = {r["id"]: n for n, r in enumerate(rows, 1)}
    lines = [
        "# Sample data", "",
        "Written by `python sample_data/make_sample_data.py` (seeded, byte-identical on every run); no download.",
        "Import them with `studio import sample_data/alpaca_mixed.json sample_data/sharegpt_chat.jsonl sample_data/raw_text.jsonl`.",
        "",
        "| file | what |", "| --- | --- |",
        f"| `alpaca_mixed.json` | JSON array, {len(rows)} alpaca records (Chinese and English: QA, translation, code, summarising, writing); {len(info)} planted rows below |",
        "| `sharegpt_chat.jsonl` | 40 ShareGPT conversations (1 to 3 user turns, every 5th with a system turn), Chinese and English |",
        f"| `raw_text.jsonl` | {len(RAW_TEXT)} raw-text records `{{\"id\", \"text\"}}`: domain paragraphs for continued pretraining |",
        "",
        "## Planted rows in alpaca_mixed.json",
        "",
        "`element` is the 1-based position in the JSON array, which is the `source_row` the importer keeps. "
        "`copy of` names the original row (by id) that a duplicate was made from.",
        "",
        "| id | element | kind | what | copy of |", "| --- | --- | --- | --- | --- |",
    ]
    for r, kind, detail, orig in info:
        lines.append(f"| {r['id']} | {element[r['id']]} | {kind} | {detail} | {orig and f'{orig} (element {element[orig]})'} |")
    counts = {k: sum(1 for _, kk, _, _ in info if kk == k) for k in ("exact duplicate", "near duplicate", "low quality")}
    lines += ["", "Totals: " + ", ".join(f"{v} {k}s" for k, v in counts.items()) + ".",
              "Every other row (ids `a0001`...) is unique and meant to be clean. Some base questions are asked twice "
              "in different words with the same answer (\"In plain words: ...\", \"用通俗的话说说，...\"): a semantic "
              "near-duplicate a strict text dedup should not merge.", ""]
    (HERE / "README.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
